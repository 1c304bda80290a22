"""gate.verify.ssim must equal skimage's Gaussian SSIM, and the strip-cropped score the full-frame one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from gate.verify.ssim import ssim_map, strip_bbox, strip_ssim, window_radius


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
