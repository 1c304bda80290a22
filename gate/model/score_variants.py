"""How the shipped verdict score was chosen: variants of the strip SSIM, each from one reconstruction.

The REC-Net paints each case's strip once; every variant below is then a cheap function of the same
composite, so all of them are compared on exactly the same reconstructions. Selection is on the val split
only (AUROC of ground truth vs Dice < 0.8 and of Dice ≥ 0.8 vs < 0.8); test is reported beside it with the
threshold chosen on val (5 % false rejects of val ground truth), so threshold transfer shows too.

Variants: the SSIM stabilising constant K2 (a larger one makes SSIM blind to low-contrast structure and to
small perturbations); Gaussian pre-smoothing of both images; pooling the strip's SSIM map by a low quantile
instead of the mean (local failures); and subtracting a reference that knows the true pixels but not their
fine detail — the blur ceiling (:func:`gate.verify.ssim.blurred_strip_ssim`) at three blur widths, or the
non-learned mean fill of :func:`gate.model.scores.mean_fill` — as a difference or as a ratio.

    python -m gate.model.score_variants            # prints the markdown table of docs/evaluation
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from gate.model.cases import BAD_DICE, GOOD, Case, load_cases
from gate.model.evaluate import auroc, reject_rate, threshold_for_false_reject
from gate.model.scores import Reconstructor, mean_fill
from gate.verify.normalize import normalize_robust
from gate.verify.ssim import TRUNCATE, blurred_strip_ssim, ssim_map, strip_bbox
from gate.verify.strip import boundary_strip, has_boundary
from gate.verify.tiles import stitch
from gate.verify.verifier import frame_inputs

# Margin of the box around the strip that every variant is computed on: the widest window used here.
BOX_MARGIN = 16


@dataclass(frozen=True)
class Painted:
    """One case's strip as the REC-Net painted it, cropped to the strip's box."""

    image: np.ndarray  # normalised original, float64
    composite: np.ndarray  # original outside the strip, the reconstruction inside
    strip: np.ndarray
    mask: np.ndarray
    dice: float
    ground_truth: bool


def paint(cases: Sequence[Case], session: Reconstructor) -> list[Painted | None]:
    """One REC-Net reconstruction per case (None for a mask without a boundary)."""
    card = session.card
    out: list[Painted | None] = []
    for case in cases:
        mask = np.asarray(case.mask, bool)
        if not has_boundary(mask):
            out.append(None)
            continue
        norm = normalize_robust(
            case.image, card.normalization.low_percentile, card.normalization.high_percentile
        )
        strip = boundary_strip(mask, card.strip_width)
        inputs = frame_inputs(norm, mask, strip, card.tile_size)
        composite = stitch(session.reconstruct(inputs.batch), inputs.grid, inputs.image, strip)
        box = strip_bbox(strip, BOX_MARGIN)
        assert box is not None
        out.append(
            Painted(
                image=np.asarray(norm, np.float64)[box],
                composite=np.asarray(composite, np.float64)[box],
                strip=strip[box],
                mask=mask[box],
                dice=case.dice,
                ground_truth=case.mode == GOOD,
            )
        )
    return out


def _ssim_k(a: np.ndarray, b: np.ndarray, k2: float) -> np.ndarray:
    """Gaussian SSIM map (sigma 1.5) with K1 = 0.01 and the given K2."""

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, 1.5, truncate=TRUNCATE, mode="reflect")

    ux, uy = blur(a), blur(b)
    vx, vy, vxy = blur(a * a) - ux * ux, blur(b * b) - uy * uy, blur(a * b) - ux * uy
    c1, c2 = 0.01**2, k2**2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _raw(p: Painted) -> float:
    return float(ssim_map(p.composite, p.image)[p.strip].mean())


def _ceiling(p: Painted, blur_sigma: float) -> float:
    return blurred_strip_ssim(p.image, p.strip, blur_sigma=blur_sigma)


def _fill(p: Painted) -> float:
    return float(ssim_map(mean_fill(p.image, p.mask, p.strip), p.image)[p.strip].mean())


def _smoothed(p: Painted, sigma: float) -> float:
    a, b = (ndimage.gaussian_filter(v, sigma) for v in (p.composite, p.image))
    return float(ssim_map(a, b)[p.strip].mean())


VARIANTS: dict[str, Callable[[Painted], float]] = {
    "ssim (paper)": _raw,
    "K2 = 0.1": lambda p: float(_ssim_k(p.composite, p.image, 0.1)[p.strip].mean()),
    "K2 = 0.2": lambda p: float(_ssim_k(p.composite, p.image, 0.2)[p.strip].mean()),
    "pre-smoothed sigma 1": lambda p: _smoothed(p, 1.0),
    "10th percentile of the strip": lambda p: float(
        np.quantile(ssim_map(p.composite, p.image)[p.strip], 0.1)
    ),
    "25th percentile of the strip": lambda p: float(
        np.quantile(ssim_map(p.composite, p.image)[p.strip], 0.25)
    ),
    "ssim − blur ceiling 0.7": lambda p: _raw(p) - _ceiling(p, 0.7),
    "ssim − blur ceiling 1.0": lambda p: _raw(p) - _ceiling(p, 1.0),
    "ssim − blur ceiling 1.5 (shipped ssim_gain)": lambda p: _raw(p) - _ceiling(p, 1.5),
    "(1 + ssim) / (1 + blur ceiling 1.5)": lambda p: (1 + _raw(p)) / (1 + _ceiling(p, 1.5)),
    "ssim − mean fill": lambda p: _raw(p) - _fill(p),
}


@dataclass(frozen=True)
class VariantRow:
    name: str
    val_auroc: float  # Dice >= 0.8 vs < 0.8
    val_auroc_gt: float  # ground truth vs Dice < 0.8
    test_auroc: float
    test_auroc_gt: float
    sensitivity: float  # test, at the val threshold
    false_reject_gt: float  # test, at the val threshold


def _arrays(painted: Sequence[Painted | None], fn: Callable[[Painted], float]) -> tuple[np.ndarray, ...]:
    kept = [p for p in painted if p is not None]
    scores = np.array([fn(p) for p in kept])
    return scores, np.array([p.dice for p in kept]) < BAD_DICE, np.array([p.ground_truth for p in kept])


def compare(val: Sequence[Painted | None], test: Sequence[Painted | None]) -> list[VariantRow]:
    rows = []
    for name, fn in VARIANTS.items():
        sv, bv, gv = _arrays(val, fn)
        st, bt, gt = _arrays(test, fn)
        threshold = threshold_for_false_reject(sv[gv])
        rows.append(
            VariantRow(
                name,
                auroc(sv[~bv], sv[bv]),
                auroc(sv[gv], sv[bv]),
                auroc(st[~bt], st[bt]),
                auroc(st[gt], st[bt]),
                reject_rate(st[bt], threshold),
                reject_rate(st[gt], threshold),
            )
        )
    return rows


def markdown(rows: Sequence[VariantRow]) -> str:
    lines = [
        "| variant | val: AUROC Dice split | val: AUROC ground truth vs bad | test: AUROC Dice split "
        "| test: AUROC ground truth vs bad | test sensitivity at val threshold | test false-reject there |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.val_auroc:.3f} | {r.val_auroc_gt:.3f} | {r.test_auroc:.3f} | "
            f"{r.test_auroc_gt:.3f} | {r.sensitivity:.2f} | {r.false_reject_gt:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    from gate.verify.recnet import CPU_PROVIDER, load_shipped_model

    session = load_shipped_model(providers=[CPU_PROVIDER])
    print(markdown(compare(paint(load_cases("val"), session), paint(load_cases("test"), session))))


if __name__ == "__main__":
    main()
