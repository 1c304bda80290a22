"""Scores that judge a mask on its image, to compare (issue 3, item 5); higher = better for all.

* ``ssim`` — the paper's raw strip SSIM of the REC-Net reconstruction (arXiv 2310.16999, sec. 2), exactly
  the gate's :meth:`gate.verify.verifier.Verifier.score_frame` numerics;
* ``ssim_gain`` — the shipped verdict score: ``ssim`` minus the strip's blur ceiling (the SSIM of a
  Gaussian blur of the true strip pixels, :func:`gate.verify.ssim.blurred_strip_ssim`);
* ``ssim_label_z`` — the same, as a z-score against the good masks of the same segment label (val
  split): tissue texture and noise set each label's typical SSIM, so one pooled threshold is unfair;
* ``ssim_local`` — local optimality: the mask's strip SSIM minus the best strip SSIM of its slightly
  moved/dilated/eroded neighbours on the same image. A correct mask sits on the image's edges, so every
  neighbour reconstructs worse (score > 0); a wrong mask has a neighbour nearer the truth that
  reconstructs better (score < 0). Texture and noise affect the mask and its neighbours alike and cancel;
* ``ssim_wide`` — the mask's REC-Net SSIM on that common strip (the strip widened by the neighbour step):
  a correct mask must explain a wider band of hidden pixels, where a wrong one cannot hide;
* ``gradient`` — non-learned: mean image gradient magnitude along the mask boundary;
* ``fill_ssim`` — non-learned: strip SSIM after filling the strip with Gaussian-weighted local means of
  the mask's inside and outside (a "REC-Net" with no learning), and its local optimality ``fill_local``.

:class:`StripScorer` runs every mask of one image (the mask and its neighbours) through one REC-Net call,
so the tiles batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from gate.verify.modelcard import ModelCard
from gate.verify.neighbours import common_strip, frame_local_score, local_optimality, neighbour_masks
from gate.verify.normalize import normalize_robust
from gate.verify.ssim import blurred_strip_ssim, strip_ssim
from gate.verify.strip import boundary_strip, has_boundary
from gate.verify.verifier import FrameInputs, frame_inputs, frame_score


class Reconstructor(Protocol):
    """What the scorer needs of a REC-Net session (``RecNetSession`` or ``evaluate_quick.TorchSession``)."""

    @property
    def card(self) -> ModelCard: ...

    def reconstruct(self, batch: np.ndarray) -> np.ndarray: ...


class StripScorer:
    """REC-Net strip SSIM of many masks on one image, batched into one reconstruction call."""

    def __init__(self, session: Reconstructor) -> None:
        self.session = session
        self.card = session.card

    def normalize(self, image: np.ndarray) -> np.ndarray:
        n = self.card.normalization
        return normalize_robust(image, n.low_percentile, n.high_percentile)

    def ssim_many(
        self, image_norm: np.ndarray, masks: Sequence[np.ndarray], strip: np.ndarray | None = None
    ) -> list[float]:
        """Strip SSIM of each mask on the normalised image; NaN for a mask without a boundary.

        Each mask is judged on its own strip (the gate's score) unless a common ``strip`` is given: then
        every mask gets the same blanked pixels and the same judged pixels, and only the mask channel differs.
        """
        prepared: list[FrameInputs | None] = []
        for mask in masks:
            mask = np.asarray(mask, bool)
            if not has_boundary(mask):
                prepared.append(None)
                continue
            own = boundary_strip(mask, self.card.strip_width) if strip is None else strip
            prepared.append(frame_inputs(image_norm, mask, own, self.card.tile_size))
        batches = [p.batch for p in prepared if p is not None]
        if not batches:
            return [float("nan")] * len(masks)
        recs = self.session.reconstruct(np.concatenate(batches))
        out, offset = [], 0
        for p in prepared:
            if p is None:
                out.append(float("nan"))
                continue
            n = len(p.grid)
            out.append(frame_score(p, recs[offset : offset + n], sigma=self.card.ssim_sigma)[0])
            offset += n
        return out

    def ssim(self, image: np.ndarray, mask: np.ndarray) -> float:
        """The gate's raw score (``Verifier.score_frame``)."""
        return self.ssim_many(self.normalize(image), [mask])[0]

    def ssim_local(self, image: np.ndarray, mask: np.ndarray) -> float:
        """Local optimality on the common strip of the mask and its neighbours (see :func:`common_strip`)."""
        masks = [np.asarray(mask, bool), *neighbour_masks(mask)]
        if not has_boundary(masks[0]):
            return float("nan")
        values = self.ssim_many(self.normalize(image), masks, common_strip(masks, self.card.strip_width))
        return local_optimality(values[0], values[1:])


# --- non-learned scores ---------------------------------------------------------------------------


def boundary_gradient(image: np.ndarray, mask: np.ndarray, *, sigma: float = 1.0) -> float:
    """Mean gradient magnitude (normalised image, Gaussian derivative) on the 1-pixel boundary strip."""
    mask = np.asarray(mask, bool)
    if not has_boundary(mask):
        return float("nan")
    grad = ndimage.gaussian_gradient_magnitude(normalize_robust(image).astype(np.float64), sigma)
    return float(grad[boundary_strip(mask, 1)].mean())


def _local_mean(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of ``values`` over the pixels where ``weight`` is 1 (normalised convolution)."""
    num = ndimage.gaussian_filter(values * weight, sigma)
    den = ndimage.gaussian_filter(weight.astype(np.float64), sigma)
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)


def mean_fill(image_norm: np.ndarray, mask: np.ndarray, strip: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """The strip painted with the local mean of the visible inside (mask) or outside (background) pixels."""
    img = np.asarray(image_norm, np.float64)
    visible = ~strip
    inside = _local_mean(img, (visible & mask).astype(np.float64), sigma)
    outside = _local_mean(img, (visible & ~mask).astype(np.float64), sigma)
    return np.where(strip, np.where(mask, inside, outside), img)


def fill_ssim_norm(
    image_norm: np.ndarray, mask: np.ndarray, strip_width: int = 2, ssim_sigma: float = 1.5
) -> float:
    mask = np.asarray(mask, bool)
    if not has_boundary(mask):
        return float("nan")
    strip = boundary_strip(mask, strip_width)
    return strip_ssim(mean_fill(image_norm, mask, strip), image_norm, strip, sigma=ssim_sigma)


def fill_ssim(image: np.ndarray, mask: np.ndarray, strip_width: int = 2) -> float:
    """Strip SSIM of the mask-conditioned mean fill against the image (non-learned REC-Net stand-in)."""
    return fill_ssim_norm(normalize_robust(image), mask, strip_width)


def fill_ssim_on(
    image_norm: np.ndarray, mask: np.ndarray, strip: np.ndarray, ssim_sigma: float = 1.5
) -> float:
    """Mean-fill strip SSIM of ``mask`` judged on a given strip."""
    mask = np.asarray(mask, bool)
    if not has_boundary(mask) or not strip.any():
        return float("nan")
    return strip_ssim(mean_fill(image_norm, mask, strip), image_norm, strip, sigma=ssim_sigma)


def fill_local(image: np.ndarray, mask: np.ndarray, strip_width: int = 2) -> float:
    """Local optimality of the mean fill, on the common strip of the mask and its neighbours."""
    norm = normalize_robust(image)
    masks = [np.asarray(mask, bool), *neighbour_masks(mask)]
    if not has_boundary(masks[0]):
        return float("nan")
    strip = common_strip(masks, strip_width)
    values = [fill_ssim_on(norm, m, strip) for m in masks]
    return local_optimality(values[0], values[1:])


CLASSIC = ("gradient", "fill_ssim", "fill_wide", "fill_local")


# --- all scores of many (image, mask) pairs -------------------------------------------------------


@dataclass(frozen=True)
class LabelStats:
    """Mean and spread of a score on good masks, per segment label (from the val split)."""

    mean: Mapping[str, float]
    std: Mapping[str, float]
    pooled_mean: float
    pooled_std: float

    def z(self, value: float, label: str) -> float:
        mu = self.mean.get(label, self.pooled_mean)
        sd = self.std.get(label, self.pooled_std)
        return float((value - mu) / max(sd, 1e-3))

    @classmethod
    def fit(cls, values: Sequence[float], labels: Sequence[str]) -> LabelStats:
        v = np.asarray(values, np.float64)
        lab = np.asarray(labels)
        ok = np.isfinite(v)
        mean, std = {}, {}
        for label in sorted(set(labels)):
            sel = ok & (lab == label)
            if sel.sum() >= 2:
                mean[label] = float(v[sel].mean())
                std[label] = float(v[sel].std())
        return cls(mean, std, float(v[ok].mean()), float(v[ok].std()))


def all_scores(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    scorer: StripScorer | None,
    *,
    classic: bool = True,
    strip_width: int = 2,
) -> list[dict[str, float]]:
    """Scores of each mask on one image: the REC-Net ones when ``scorer`` is given (one batched call over
    the masks and their neighbours), the non-learned ones when ``classic``."""
    norm = normalize_robust(image)
    # The REC-Net scores use the card's normalisation (the gate's); the non-learned ones the default.
    card_norm = scorer.normalize(image) if scorer is not None else None
    out = []
    for mask in masks:
        mask = np.asarray(mask, bool)
        row: dict[str, float] = {}
        if not has_boundary(mask):
            keys = (["ssim", "ssim_wide", "ssim_local"] if scorer is not None else []) + (
                list(CLASSIC) if classic else []
            )
            out.append({k: float("nan") for k in keys})
            continue
        group = [mask, *neighbour_masks(mask)]
        if scorer is not None and card_norm is not None:
            card = scorer.card
            # The proposed gate function itself (gate.verify.neighbours), so the figures are the gate's.
            local = frame_local_score(
                card_norm,
                mask,
                strip_width=card.strip_width,
                tile=card.tile_size,
                sigma=card.ssim_sigma,
                reconstruct=scorer.session.reconstruct,
            )
            assert local is not None  # the mask has a boundary
            row["ssim"] = local.ssim
            # The shipped verdict score (gate.verify.verifier.frame_scores): raw SSIM minus the blur ceiling.
            row["ssim_gain"] = local.ssim - blurred_strip_ssim(
                card_norm,
                boundary_strip(mask, card.strip_width),
                sigma=card.ssim_sigma,
                blur_sigma=card.blur_sigma,
            )
            row["ssim_wide"] = local.wide
            row["ssim_local"] = local.local
        if classic:
            grad = ndimage.gaussian_gradient_magnitude(norm.astype(np.float64), 1.0)
            row["gradient"] = float(grad[boundary_strip(mask, 1)].mean())
            row["fill_ssim"] = fill_ssim_norm(norm, mask, strip_width)
            strip = common_strip(group, strip_width)
            values = [fill_ssim_on(norm, m, strip) for m in group]
            row["fill_wide"] = values[0]
            row["fill_local"] = local_optimality(values[0], values[1:])
        out.append(row)
    return out


ScoreFn = Callable[[np.ndarray, np.ndarray], float]


def score_functions(scorer: StripScorer | None) -> dict[str, ScoreFn]:
    """The per-pair ``score(image, mask)`` functions (the label z-score needs labels: see LabelStats)."""
    fns: dict[str, ScoreFn] = {
        "gradient": boundary_gradient,
        "fill_ssim": fill_ssim,
        "fill_local": fill_local,
    }
    if scorer is not None:
        fns = {"ssim": scorer.ssim, "ssim_local": scorer.ssim_local, **fns}
    return fns
