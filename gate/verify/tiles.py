"""Tiles around the strip: the REC-Net only sees the part of a frame it has to paint.

arXiv 2310.16999 reconstructs only a strip along the segmentation boundary; running the network on
fixed-size tiles that contain strip pixels makes the cost follow the boundary length, not the image area,
and lets one batch mix tiles of frames of any size. The tiles form a grid laid over the strip's bounding
box (centred on it, so a small structure usually fits one tile); where the grid reaches past the frame
the frame is mirrored, so the network sees plausible anatomy and a mask that continues across the edge
rather than an artificial black border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

# Mirror the frame (d c b a | a b c d) where a tile reaches beyond it.
PAD_MODE: Final[Literal["symmetric"]] = "symmetric"


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one frame lie.

    ``origins`` holds the (row, col) of each tile's top-left pixel in the padded frame, i.e. the frame
    with ``pad`` = ((top, bottom), (left, right)) pixels added; a frame pixel (r, c) is padded pixel
    (r + top, c + left).
    """

    tile: int
    frame_shape: tuple[int, int]
    origins: np.ndarray  # int64 [N, 2]
    pad: tuple[tuple[int, int], tuple[int, int]]

    def __len__(self) -> int:
        return int(self.origins.shape[0])


def _grid_axis(first: int, last: int, size: int, tile: int) -> tuple[int, int, int, int]:
    """Lay ``n`` tiles over [first, last] centred; return (start, n, pad_before, pad_after)."""
    extent = last - first + 1
    n = -(-extent // tile)  # ceil
    start = first - (n * tile - extent) // 2
    pad_before = max(0, -start)
    pad_after = max(0, start + n * tile - size)
    return start, n, pad_before, pad_after


def plan_tiles(strip: np.ndarray, tile: int) -> TileGrid:
    """Choose the tiles of size ``tile`` that cover every strip pixel, keeping only tiles with strip pixels.

    The tiles do not overlap, so each strip pixel is painted by exactly one tile.
    """
    if tile < 1:
        raise ValueError(f"tile size must be >= 1 pixel, got {tile}")
    strip = np.asarray(strip, dtype=bool)
    if strip.ndim != 2:
        raise ValueError(f"strip must be 2-D, got shape {strip.shape}")
    height, width = strip.shape
    rows = np.flatnonzero(strip.any(axis=1))
    if rows.size == 0:
        return TileGrid(tile, (height, width), np.zeros((0, 2), dtype=np.int64), ((0, 0), (0, 0)))
    cols = np.flatnonzero(strip.any(axis=0))
    r0, nr, top, bottom = _grid_axis(int(rows[0]), int(rows[-1]), height, tile)
    c0, nc, left, right = _grid_axis(int(cols[0]), int(cols[-1]), width, tile)
    padded = np.pad(strip, ((top, bottom), (left, right)), constant_values=False)
    # Strip pixels per grid cell: crop the grid area and fold it into (nr, tile, nc, tile) blocks.
    area = padded[r0 + top : r0 + top + nr * tile, c0 + left : c0 + left + nc * tile]
    occupied = area.reshape(nr, tile, nc, tile).any(axis=(1, 3))
    cell_r, cell_c = np.nonzero(occupied)
    origins = np.stack([r0 + top + cell_r * tile, c0 + left + cell_c * tile], axis=1).astype(np.int64)
    return TileGrid(tile, (height, width), origins, ((top, bottom), (left, right)))


def extract_tiles(planes: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Cut the tiles of ``grid`` out of ``planes`` [C, H, W]; returns a float32 batch [N, C, T, T]."""
    planes = np.asarray(planes)
    if planes.ndim != 3 or planes.shape[1:] != grid.frame_shape:
        raise ValueError(
            f"planes must be [C, {grid.frame_shape[0]}, {grid.frame_shape[1]}], got {planes.shape}"
        )
    t = grid.tile
    batch = np.empty((len(grid), planes.shape[0], t, t), dtype=np.float32)
    if len(grid) == 0:
        return batch
    padded = np.pad(planes, ((0, 0), *grid.pad), mode=PAD_MODE)
    for i, (r, c) in enumerate(grid.origins):
        batch[i] = padded[:, r : r + t, c : c + t]
    return batch


def stitch(reconstructions: np.ndarray, grid: TileGrid, image: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """Composite (float32): the original ``image`` outside the strip, the reconstruction inside it.

    ``reconstructions`` is the network output [N, 1, T, T] for the tiles of ``grid``.
    """
    t = grid.tile
    if reconstructions.shape != (len(grid), 1, t, t):
        raise ValueError(f"reconstructions must be [{len(grid)}, 1, {t}, {t}], got {reconstructions.shape}")
    if image.shape != grid.frame_shape or strip.shape != grid.frame_shape:
        raise ValueError(
            f"image {image.shape} and strip {strip.shape} must have the frame shape {grid.frame_shape}"
        )
    (top, bottom), (left, right) = grid.pad
    height, width = grid.frame_shape
    canvas = np.zeros((height + top + bottom, width + left + right), dtype=np.float32)
    for (r, c), rec in zip(grid.origins, reconstructions, strict=True):
        canvas[r : r + t, c : c + t] = rec[0]
    painted = canvas[top : top + height, left : left + width]
    return np.where(np.asarray(strip, dtype=bool), painted, image).astype(np.float32)
