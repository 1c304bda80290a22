"""Local optimality: judge a mask against its own slightly moved, dilated and eroded neighbours (proposal).

Raw strip SSIM (arXiv 2310.16999, sec. 2) mixes two things: whether the mask is right, and how easy the
tissue around its boundary is to paint (texture, noise, edge contrast). The second varies between
structures, scanners and patients, so one threshold cannot serve all. Comparing the mask with its
neighbours *on the same image* cancels it: every candidate is reconstructed by the same REC-Net from the
same blanked pixels — the union of all candidates' strips — and judged by SSIM on those same pixels; only
the mask channel differs. A correct mask sits on the image's edges, so it explains the hidden band best
(score > 0); a wrong mask has a neighbour nearer the truth that explains it better (score < 0).

The REC-Net's SSIM stays at the heart of the score: the functions here only choose which masks and which
pixels the gate's own :func:`gate.verify.verifier.frame_inputs` / :func:`frame_score` see. Pure numpy; the
REC-Net call is a function passed in, so a caller batches all candidates' tiles into one session call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gate.verify.strip import boundary_strip, has_boundary

# Neighbours lie this many pixels from the mask: beyond the SSIM window's core, within a strip's reach.
DEFAULT_STEP_PX = 2
_CROSS = ndimage.generate_binary_structure(2, 1)


def shift_mask(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """The mask moved by (dr, dc) pixels; what leaves the frame is lost (no wrap-around)."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    h, w = mask.shape
    src_r = slice(max(0, -dr), min(h, h - dr))
    src_c = slice(max(0, -dc), min(w, w - dc))
    dst_r = slice(max(0, dr), min(h, h + dr))
    dst_c = slice(max(0, dc), min(w, w + dc))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        out[dst_r, dst_c] = mask[src_r, src_c]
    return out


def neighbour_masks(mask: np.ndarray, step: int = DEFAULT_STEP_PX) -> list[np.ndarray]:
    """The mask moved by ``step`` pixels up, down, left and right, dilated and eroded by ``step``.

    Neighbours without a boundary (eroded away, or filling the frame) are dropped.
    """
    mask = np.asarray(mask, bool)
    out = [shift_mask(mask, dr, dc) for dr, dc in ((step, 0), (-step, 0), (0, step), (0, -step))]
    out.append(ndimage.binary_dilation(mask, _CROSS, iterations=step))
    out.append(ndimage.binary_erosion(mask, _CROSS, iterations=step))
    return [m for m in out if has_boundary(m)]


def common_strip(masks: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Union of the boundary strips (half-width ``width``) of the masks that have a boundary."""
    out = np.zeros(np.shape(masks[0]), bool)
    for m in masks:
        if has_boundary(m):
            out |= boundary_strip(np.asarray(m, bool), width)
    return out


def local_optimality(own: float, neighbours: Sequence[float]) -> float:
    """``own`` minus the best finite neighbour score; NaN when there is nothing to compare."""
    finite = [v for v in neighbours if np.isfinite(v)]
    return float(own - max(finite)) if finite and np.isfinite(own) else float("nan")


@dataclass(frozen=True)
class LocalScore:
    """The REC-Net scores of one mask on one frame, all SSIM over strips."""

    ssim: float  # the paper's score: own strip (what Verifier.score_frame returns)
    wide: float  # the mask's SSIM on the common strip of it and its neighbours
    local: float  # wide minus the best neighbour's SSIM on that same strip
    strip_pixels: int  # own strip pixels (the frame's weight in the segment score)


def frame_local_score(
    image_norm: np.ndarray,
    mask: np.ndarray,
    *,
    strip_width: int,
    tile: int,
    sigma: float,
    reconstruct: Callable[[np.ndarray], np.ndarray],
    step: int = DEFAULT_STEP_PX,
) -> LocalScore | None:
    """The gate's SSIM and the local-optimality scores of ``mask``, with one REC-Net call.

    ``reconstruct`` maps a float32 batch [N, 2, T, T] to [N, 1, T, T] (``RecNetSession.reconstruct``).
    Returns None for a mask without a boundary, as the verifier skips such a frame.
    """
    from gate.verify.verifier import frame_inputs, frame_score

    mask = np.asarray(mask, bool)
    if not has_boundary(mask):
        return None
    group = [mask, *neighbour_masks(mask, step)]
    wide_strip = common_strip(group, strip_width)
    own_strip = boundary_strip(mask, strip_width)
    prepared = [frame_inputs(image_norm, mask, own_strip, tile)]
    prepared += [frame_inputs(image_norm, m, wide_strip, tile) for m in group]
    recs = reconstruct(np.concatenate([p.batch for p in prepared]))
    scores, offset = [], 0
    for p in prepared:
        n = len(p.grid)
        scores.append(frame_score(p, recs[offset : offset + n], sigma=sigma)[0])
        offset += n
    return LocalScore(
        ssim=scores[0],
        wide=scores[1],
        local=local_optimality(scores[1], scores[2:]),
        strip_pixels=int(own_strip.sum()),
    )
