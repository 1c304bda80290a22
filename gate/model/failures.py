"""Bad segmentations that look like real AI failures, each with its true Dice against the truth.

Pure numpy/scipy functions of a boolean 2-D mask (and a seeded generator where random): over- and
under-segmentation by k mm (pixel spacing honoured), shifts, boundary noise, elastic warps, missing
parts, spurious blobs; a neighbouring structure's label and a wrong slice's mask come from the caller,
who has the label map. :func:`failure_masks` draws a spectrum from mild (Dice > 0.8, which must pass)
to gross, so the good/bad boundary is populated on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from gate.verify.neighbours import shift_mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice = 2|A∩B| / (|A| + |B|); 1.0 when both are empty."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def mean_surface_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Average symmetric surface distance in pixels (ASSD): how far, on average, each mask's outline lies
    from the other's. It measures what the REC-Net judges — where the boundary is — where Dice measures
    volume overlap (a 1-pixel shift costs a small structure much more Dice than a large one). Infinite when
    either mask is empty."""
    ea, eb = _outline(np.asarray(a, bool)), _outline(np.asarray(b, bool))
    if not ea.any() or not eb.any():
        return float("inf")
    da = ndimage.distance_transform_edt(~eb)[ea]
    db = ndimage.distance_transform_edt(~ea)[eb]
    return float((da.sum() + db.sum()) / (da.size + db.size))


def dilate_mm(mask: np.ndarray, mm: float, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """All pixels within ``mm`` (Euclidean, in mm) of the mask: over-segmentation."""
    mask = np.asarray(mask, bool)
    if mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= mm


def erode_mm(mask: np.ndarray, mm: float, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Mask pixels farther than ``mm`` from the background: under-segmentation."""
    mask = np.asarray(mask, bool)
    if mm <= 0 or not mask.any():
        return mask.copy()
    padded = np.pad(mask, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1] > mm


# The mask moved by (dr, dc) pixels, nothing wrapping around: the same move the local-optimality
# neighbours make.
shift = shift_mask


def _smooth_field(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field / (float(np.abs(field).max()) or 1.0)


def boundary_noise(
    mask: np.ndarray, amplitude: float, rng: np.random.Generator, sigma: float = 3.0
) -> np.ndarray:
    """The boundary moved in and out by up to ``amplitude`` pixels along a smooth random profile.

    Thresholds the signed distance plus smooth noise: a ragged outline as an under-trained network draws.
    """
    mask = np.asarray(mask, bool)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    signed = np.where(mask, inside, -outside + 1.0)
    return signed + amplitude * _smooth_field(mask.shape, sigma, rng) > 0.5


def elastic_warp(
    mask: np.ndarray, amplitude: float, rng: np.random.Generator, sigma: float = 12.0
) -> np.ndarray:
    """The mask pulled by a smooth displacement field of up to ``amplitude`` pixels (a plausible blob)."""
    mask = np.asarray(mask, bool)
    dr = amplitude * _smooth_field(mask.shape, sigma, rng)
    dc = amplitude * _smooth_field(mask.shape, sigma, rng)
    rows, cols = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float64)
    warped = ndimage.map_coordinates(
        mask.astype(np.float32), [rows + dr, cols + dc], order=1, mode="constant"
    )
    return warped > 0.5


def missing_part(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Cut off about ``fraction`` of the mask's area beyond a straight line of random direction."""
    mask = np.asarray(mask, bool)
    pts = np.argwhere(mask)
    if pts.size == 0:
        return mask.copy()
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    proj = pts @ np.array([np.sin(angle), np.cos(angle)])
    cut = float(np.quantile(proj, 1.0 - fraction))
    out = mask.copy()
    gone = pts[proj > cut]
    out[gone[:, 0], gone[:, 1]] = False
    return out


def spurious_blob(mask: np.ndarray, area_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The mask plus a false-positive blob of ``area_fraction`` of its area somewhere outside it."""
    from gate.synth.phantom import blob_mask

    mask = np.asarray(mask, bool)
    h, w = mask.shape
    r = max(2.0, float(np.sqrt(area_fraction * max(int(mask.sum()), 1) / np.pi)))
    free = np.argwhere(~dilate_mm(mask, r + 2.0))
    free = free[(free[:, 0] > r) & (free[:, 0] < h - r) & (free[:, 1] > r) & (free[:, 1] < w - r)]
    if free.size == 0:
        return mask.copy()
    center = free[rng.integers(len(free))].astype(float)
    blob = blob_mask(
        (h, w), (center[0], center[1]), (r, r * float(rng.uniform(0.7, 1.0))), rng, irregularity=0.2
    )
    return mask | blob


def _direction(rng: np.random.Generator, dist: float) -> tuple[int, int]:
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    return round(dist * np.sin(angle)), round(dist * np.cos(angle))


def equivalent_radius(mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Radius (mm) of the disc with the mask's area: failure sizes scale with the structure."""
    return float(np.sqrt(np.asarray(mask, bool).sum() * spacing[0] * spacing[1] / np.pi))


def failure_masks(
    truth: np.ndarray,
    rng: np.random.Generator,
    spacing: tuple[float, float] = (1.0, 1.0),
    *,
    neighbours: Sequence[tuple[str, np.ndarray]] = (),
    other_slices: Sequence[tuple[str, np.ndarray]] = (),
) -> list[tuple[str, np.ndarray]]:
    """Wrong versions of ``truth`` from mild to gross: (mode name, mask), empty or full masks dropped.

    Sizes are relative to the structure (its equivalent radius R in mm) so that each mode lands on both
    sides of Dice 0.8 for large and small structures alike. ``neighbours`` are other structures' masks
    on the same frame (mode ``neighbour_label``); ``other_slices`` are this structure's masks on other
    frames (mode ``wrong_slice``).
    """
    truth = np.asarray(truth, bool)
    radius = max(equivalent_radius(truth, spacing), 1.0)
    px = float(np.mean(spacing))
    out: list[tuple[str, np.ndarray]] = []
    for rel in (0.05, 0.15, 0.3):
        mm = max(rel * radius, px)
        out.append((f"dilate_{rel:.2f}R", dilate_mm(truth, mm, spacing)))
        out.append((f"erode_{rel:.2f}R", erode_mm(truth, mm, spacing)))
    for rel in (0.1, 0.3, 0.6):
        dr, dc = _direction(rng, max(rel * radius / px, 1.0))
        out.append((f"shift_{rel:.1f}R", shift(truth, dr, dc)))
    out.append(("boundary_noise", boundary_noise(truth, float(rng.uniform(0.1, 0.35)) * radius / px, rng)))
    out.append(("elastic_warp", elastic_warp(truth, float(rng.uniform(0.15, 0.5)) * radius / px, rng)))
    out.append(("missing_part", missing_part(truth, float(rng.uniform(0.1, 0.5)), rng)))
    out.append(("spurious_blob", spurious_blob(truth, float(rng.uniform(0.2, 1.0)), rng)))
    out += [("neighbour_label", m) for _, m in neighbours]
    out += [("wrong_slice", m) for _, m in other_slices]
    return [(name, m) for name, m in out if m.any() and not m.all()]
