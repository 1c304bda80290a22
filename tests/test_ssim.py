"""gate.verify.ssim must equal skimage's Gaussian SSIM, and the strip-cropped score the full-frame one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from gate.verify.ssim import (
    blurred_strip_ssim,
    ssim_map,
    strip_bbox,
    strip_ssim,
    window_radius,
)


def _skimage_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    _, full = structural_similarity(
        a, b, gaussian_weights=True, sigma=sigma, use_sample_covariance=False, data_range=1.0, full=True
    )
    return full


def _pair(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random(shape), 2.0)
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(a + 0.1 * rng.standard_normal(shape), 0.0, 1.0)
    return a, b


def _ring_strip(shape: tuple[int, int], center: tuple[int, int], radius: float, width: float) -> np.ndarray:
    rr, cc = np.indices(shape)
    d = np.hypot(rr - center[0], cc - center[1])
    return np.abs(d - radius) <= width


@pytest.mark.parametrize("sigma", [1.5, 1.0])
def test_map_equals_skimage_full_map(sigma: float) -> None:
    a, b = _pair((48, 61), seed=0)
    np.testing.assert_allclose(ssim_map(a, b, sigma=sigma), _skimage_map(a, b, sigma), rtol=0, atol=1e-12)


def test_identical_images_score_one() -> None:
    a, _ = _pair((32, 32), seed=1)
    np.testing.assert_allclose(ssim_map(a, a), 1.0, atol=1e-12)
    strip = _ring_strip(a.shape, (16, 16), 8, 2)
    assert strip_ssim(a, a, strip) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("center", "radius"),
    [((40, 50), 10.0), ((3, 4), 6.0), ((75, 95), 8.0)],  # interior, top-left corner, bottom-right corner
)
def test_strip_score_equals_full_frame_skimage_mean(center: tuple[int, int], radius: float) -> None:
    image, recon = _pair((80, 100), seed=2)
    strip = _ring_strip(image.shape, center, radius, 2.5)
    # The box is smaller than the frame, so the cropping is really exercised.
    box = strip_bbox(strip, window_radius(1.5))
    assert box is not None and image[box].size < image.size
    composite = np.where(strip, recon, image)
    expected = _skimage_map(composite, image)[strip].mean()
    assert strip_ssim(recon, image, strip) == pytest.approx(expected, abs=1e-12)
    # A stitched composite and a full-frame reconstruction give the same score.
    assert strip_ssim(composite, image, strip) == pytest.approx(expected, abs=1e-12)
    assert expected < 0.99  # the noise really lowers the score


def test_float32_inputs_match_float64() -> None:
    image, recon = _pair((40, 40), seed=3)
    strip = _ring_strip(image.shape, (20, 20), 9, 2)
    s64 = strip_ssim(recon, image, strip)
    s32 = strip_ssim(recon.astype(np.float32), image.astype(np.float32), strip)
    assert s32 == pytest.approx(s64, abs=1e-6)


def test_strip_bbox_grows_and_clips() -> None:
    strip = np.zeros((20, 30), dtype=bool)
    strip[2, 10] = strip[8, 25] = True
    assert strip_bbox(strip, 5) == (slice(0, 14), slice(5, 30))
    assert strip_bbox(np.zeros((5, 5), dtype=bool), 5) is None


def test_invalid_inputs_raise() -> None:
    a = np.zeros((10, 10))
    with pytest.raises(ValueError, match="equal shape"):
        ssim_map(a, np.zeros((10, 11)))
    with pytest.raises(ValueError, match="2-D"):
        ssim_map(np.zeros((2, 10, 10)), np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match="empty"):
        strip_ssim(a, a, np.zeros((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="strip shape"):
        strip_ssim(a, a, np.ones((9, 10), dtype=bool))


# --- the blur ceiling and the gain score ------------------------------------------------------------


def _full_frame_ceiling(image: np.ndarray, strip: np.ndarray, blur_sigma: float) -> float:
    blurred = ndimage.gaussian_filter(image, blur_sigma, truncate=3.5, mode="reflect")
    return float(ssim_map(np.where(strip, blurred, image), image)[strip].mean())


@pytest.mark.parametrize("center", [(30, 40), (6, 8), (55, 70)])  # inside, and crossing the frame edges
def test_blur_ceiling_equals_the_full_frame_computation(center: tuple[int, int]) -> None:
    image, _ = _pair((64, 80), seed=3)
    strip = _ring_strip(image.shape, center, 12.0, 1.0)
    for blur_sigma in (1.0, 1.5, 2.5):
        np.testing.assert_allclose(
            blurred_strip_ssim(image, strip, blur_sigma=blur_sigma),
            _full_frame_ceiling(image, strip, blur_sigma),
            rtol=0,
            atol=1e-12,
        )


def test_blur_ceiling_is_one_on_flat_tissue_and_lower_on_noise_and_edges() -> None:
    rng = np.random.default_rng(0)
    strip = _ring_strip((64, 64), (32, 32), 14.0, 1.0)
    flat = np.full((64, 64), 0.4)
    assert blurred_strip_ssim(flat, strip) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(flat + 0.05 * rng.standard_normal(flat.shape), 0, 1)
    rr, cc = np.indices(flat.shape)
    edge = np.where(np.hypot(rr - 32, cc - 32) <= 14.0, 0.8, 0.2)
    assert blurred_strip_ssim(noisy, strip) < 0.9
    assert blurred_strip_ssim(edge, strip) < 0.9


def test_ceiling_of_the_blur_itself_and_of_the_truth() -> None:
    """The blur ceiling is the strip SSIM of exactly the blurred image: painting the strip with that blur
    scores the ceiling, painting it with the truth scores 1."""
    image, _ = _pair((48, 61), seed=4)
    strip = _ring_strip(image.shape, (24, 30), 10.0, 1.0)
    ceiling = blurred_strip_ssim(image, strip, blur_sigma=1.5)
    blurred = ndimage.gaussian_filter(image, 1.5, truncate=3.5, mode="reflect")
    assert strip_ssim(blurred, image, strip) == pytest.approx(ceiling, abs=1e-12)
    assert strip_ssim(image, image, strip) == pytest.approx(1.0, abs=1e-12) and ceiling < 1.0
    with pytest.raises(ValueError, match="blur sigma"):
        blurred_strip_ssim(image, strip, blur_sigma=0.0)
