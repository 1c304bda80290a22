"""The strip around a mask boundary (gate.verify.strip), checked against a distance-transform definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gate.verify.strip import boundary_strip, has_boundary


def _blob(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 3.0) > 0.5


def _reference_strip(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within city-block distance ``width`` of the other side of the boundary (inside the frame)."""
    outside_dist = ndimage.distance_transform_cdt(~mask, metric="taxicab")  # to nearest mask pixel
    inside_dist = ndimage.distance_transform_cdt(mask, metric="taxicab")  # to nearest background pixel
    return np.where(mask, inside_dist <= width, outside_dist <= width)


@pytest.mark.parametrize("width", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_strip_matches_city_block_distance(width: int, seed: int) -> None:
    mask = _blob((40, 50), seed)
    assert has_boundary(mask)
    np.testing.assert_array_equal(boundary_strip(mask, width), _reference_strip(mask, width))


def test_square_strip_reaches_width_both_sides() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[10:20, 10:20] = True
    strip = boundary_strip(mask, 2)
    assert strip.dtype == bool
    row = strip[15]
    # Columns 8, 9 outside and 10, 11 inside on the left edge; 18, 19 inside and 20, 21 outside on the right.
    np.testing.assert_array_equal(np.flatnonzero(row), [8, 9, 10, 11, 18, 19, 20, 21])


def test_image_edge_is_not_a_boundary() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[:, :8] = True  # touches the top, bottom and left edges of the frame
    strip = boundary_strip(mask, 2)
    assert not strip[:, :6].any()
    assert strip[:, 6:10].all()
    assert not strip[:, 10:].any()


def test_empty_and_full_masks_have_no_strip() -> None:
    empty = np.zeros((16, 16), dtype=bool)
    full = np.ones((16, 16), dtype=bool)
    assert not boundary_strip(empty, 3).any()
    assert not boundary_strip(full, 3).any()
    assert not has_boundary(empty)
    assert not has_boundary(full)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="width"):
        boundary_strip(np.ones((4, 4), dtype=bool), 0)
    with pytest.raises(ValueError, match="2-D"):
        boundary_strip(np.ones((2, 4, 4), dtype=bool), 1)
