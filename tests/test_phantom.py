"""Tests for gate.synth.phantom: blobs and painted structures with exactly known masks."""

import numpy as np
import pytest
from scipy import ndimage

from gate.synth.phantom import blob_mask, paint_structure, soft_mask

SHAPE = (128, 128)


def _blob(seed: int = 0, **kwargs: object) -> np.ndarray:
    return blob_mask(SHAPE, (60.0, 70.0), (20.0, 12.0), np.random.default_rng(seed), **kwargs)


def test_blob_is_deterministic_for_a_seed() -> None:
    assert np.array_equal(_blob(3), _blob(3))
    assert not np.array_equal(_blob(3), _blob(4))


def test_blob_area_and_centre_follow_the_ellipse() -> None:
    mask = _blob(1)
    assert mask.dtype == bool and mask.shape == SHAPE
    area = np.pi * 20.0 * 12.0
    assert 0.75 * area < mask.sum() < 1.25 * area
    centre = ndimage.center_of_mass(mask)
    assert np.allclose(centre, (60.0, 70.0), atol=3.0)
    assert ndimage.label(mask)[1] == 1


def test_blob_without_irregularity_is_the_ellipse() -> None:
    mask = _blob(0, irregularity=0.0, angle=0.0)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    ellipse = ((rows - 60.0) / 20.0) ** 2 + ((cols - 70.0) / 12.0) ** 2 <= 1.0
    assert np.array_equal(mask, ellipse)


def test_blob_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        _blob(0, irregularity=1.5)
    with pytest.raises(ValueError):
        blob_mask(SHAPE, (60.0, 70.0), (0.0, 12.0), np.random.default_rng(0))


@pytest.mark.parametrize("sigma", [0.5, 0.8, 2.0])
def test_soft_mask_thresholds_back_to_the_mask(sigma: float) -> None:
    mask = _blob(2, irregularity=0.5)
    mask[10, 10] = True  # a one-pixel structure survives too, unlike with a Gaussian blur
    soft = soft_mask(mask, sigma)
    assert np.array_equal(soft > 0.5, mask)


@pytest.mark.parametrize("contrast", [0.3, -0.25])
def test_painted_structure_has_the_contrast_and_exact_boundary(contrast: float) -> None:
    rng = np.random.default_rng(5)
    background = (0.45 + 0.05 * rng.standard_normal(SHAPE)).astype(np.float32)
    mask = _blob(6)
    image = paint_structure(background, mask, np.random.default_rng(7), contrast=contrast)
    assert image.dtype == np.float32 and image.shape == SHAPE
    assert image.min() >= 0.0 and image.max() <= 1.0
    core = ndimage.binary_erosion(mask, iterations=3)
    far = ~ndimage.binary_dilation(mask, iterations=3)
    assert np.mean(image[core] - background[core]) == pytest.approx(contrast, abs=0.02)
    assert np.allclose(image[far], background[far], atol=1e-3)
    # the boundary is where the mask says: halfway between background and structure
    change = (image - background) / contrast
    assert np.all(change[ndimage.binary_erosion(mask) ^ mask] > 0.4)
    assert np.all(change[ndimage.binary_dilation(mask) & ~mask] < 0.6)


def test_painting_is_deterministic_and_clipped() -> None:
    background = np.full(SHAPE, 0.9, np.float32)
    mask = _blob(8)
    first = paint_structure(background, mask, np.random.default_rng(9), contrast=0.5)
    second = paint_structure(background, mask, np.random.default_rng(9), contrast=0.5)
    assert np.array_equal(first, second)
    assert first.max() <= 1.0


def test_paint_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        paint_structure(np.zeros((4, 4)), np.zeros((5, 5), bool), np.random.default_rng(0), contrast=0.1)
