"""Tiles around the strip (gate.verify.tiles): full coverage, no idle tiles, exact round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gate.verify.strip import boundary_strip
from gate.verify.tiles import TileGrid, extract_tiles, plan_tiles, stitch

TILE = 16


def _blob_strip(shape: tuple[int, int], seed: int, width: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random(shape), 2.5) > 0.5
    return boundary_strip(mask, width)


def _coverage(grid: TileGrid) -> np.ndarray:
    """How many tiles cover each frame pixel."""
    (top, bottom), (left, right) = grid.pad
    h, w = grid.frame_shape
    count = np.zeros((h + top + bottom, w + left + right), dtype=int)
    for r, c in grid.origins:
        count[r : r + grid.tile, c : c + grid.tile] += 1
    return count[top : top + h, left : left + w]


# Frames larger than, equal to, smaller than and not a multiple of the tile.
SHAPES = [(64, 80), (16, 16), (10, 13), (37, 29)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_strip_pixel_covered_exactly_once(shape: tuple[int, int], seed: int) -> None:
    strip = _blob_strip(shape, seed)
    assert strip.any()
    grid = plan_tiles(strip, TILE)
    assert grid.origins.dtype == np.int64 and grid.origins.shape == (len(grid), 2)
    np.testing.assert_array_equal(_coverage(grid)[strip], 1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_tile_without_strip_pixels(shape: tuple[int, int], seed: int) -> None:
    strip = _blob_strip(shape, seed)
    grid = plan_tiles(strip, TILE)
    (top, bottom), (left, right) = grid.pad
    padded = np.pad(strip, ((top, bottom), (left, right)))
    for r, c in grid.origins:
        assert padded[r : r + TILE, c : c + TILE].any()


def test_tiles_follow_the_boundary_not_the_image() -> None:
    strip = np.zeros((512, 512), dtype=bool)
    strip[300:310, 200:212] = True
    grid = plan_tiles(strip, 64)
    assert len(grid) == 1
    assert grid.pad == ((0, 0), (0, 0))
    r, c = grid.origins[0]
    assert r <= 300 and r + 64 >= 310 and c <= 200 and c + 64 >= 212


def test_empty_strip_gives_no_tiles() -> None:
    grid = plan_tiles(np.zeros((30, 30), dtype=bool), TILE)
    assert len(grid) == 0
    assert extract_tiles(np.zeros((2, 30, 30)), grid).shape == (0, 2, TILE, TILE)


def test_extract_batch_shape_dtype_and_content() -> None:
    rng = np.random.default_rng(5)
    planes = rng.random((2, 64, 80))
    strip = _blob_strip((64, 80), 0)
    grid = plan_tiles(strip, TILE)
    batch = extract_tiles(planes, grid)
    assert batch.shape == (len(grid), 2, TILE, TILE) and batch.dtype == np.float32
    (top, _), (left, _) = grid.pad
    for tile, (r, c) in zip(batch, grid.origins, strict=True):
        fr, fc = r - top, c - left
        if 0 <= fr and fr + TILE <= 64 and 0 <= fc and fc + TILE <= 80:
            np.testing.assert_array_equal(tile, planes[:, fr : fr + TILE, fc : fc + TILE].astype(np.float32))


def test_padding_mirrors_the_frame() -> None:
    image = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    strip = np.zeros_like(image, dtype=bool)
    strip[0, 0] = True
    grid = plan_tiles(strip, TILE)
    (top, _), (left, _) = grid.pad
    assert top > 0 and left > 0
    tile = extract_tiles(image[None], grid)[0, 0]
    r, c = grid.origins[0]
    # Frame pixel (0, 0) and its mirror image one pixel above it.
    assert tile[top - r, left - c] == image[0, 0]
    assert tile[top - r - 1, left - c] == image[0, 0]
    assert tile[top - r - 2, left - c] == image[1, 0]


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_stitch_restores_the_image(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    image = rng.random(shape).astype(np.float32)
    strip = _blob_strip(shape, 1)
    grid = plan_tiles(strip, TILE)
    tiles = extract_tiles(image[None], grid)
    np.testing.assert_array_equal(stitch(tiles, grid, image, strip), image)


def test_stitch_paints_only_the_strip() -> None:
    rng = np.random.default_rng(8)
    image = rng.random((40, 40)).astype(np.float32)
    strip = _blob_strip((40, 40), 2)
    grid = plan_tiles(strip, TILE)
    painted = np.full((len(grid), 1, TILE, TILE), 7.0, dtype=np.float32)
    composite = stitch(painted, grid, image, strip)
    assert composite.dtype == np.float32
    np.testing.assert_array_equal(composite[strip], 7.0)
    np.testing.assert_array_equal(composite[~strip], image[~strip])


def test_shape_errors_raise() -> None:
    strip = _blob_strip((40, 40), 0)
    grid = plan_tiles(strip, TILE)
    with pytest.raises(ValueError, match="planes"):
        extract_tiles(np.zeros((2, 40, 41)), grid)
    with pytest.raises(ValueError, match="reconstructions"):
        stitch(np.zeros((len(grid), 2, TILE, TILE), np.float32), grid, np.zeros((40, 40)), strip)
    with pytest.raises(ValueError, match="frame shape"):
        stitch(np.zeros((len(grid), 1, TILE, TILE), np.float32), grid, np.zeros((40, 41)), strip)
    with pytest.raises(ValueError, match="tile size"):
        plan_tiles(strip, 0)
