"""The gate's frame score as a differentiable torch function of the normalised image.

An adversary who knows the shipped REC-Net can follow the gradient of the verdict score with respect to
the image (arXiv 2310.16999, sec. 4, adversarial robustness). This module rebuilds the gate's scoring of
one frame (:mod:`gate.verify.verifier`) step for step in torch: blank the strip, cut the tile grid with
mirrored edges (:mod:`gate.verify.tiles`), run the U-Net generator, stitch the reconstruction into the
strip, and average the Gaussian SSIM map over the strip pixels (:mod:`gate.verify.ssim`, the same window
and constants through :func:`gate.model.losses.ssim_map`), minus the blur ceiling when the card's score is
``ssim_gain``. Everything that depends on the mask only
(strip, tile grid, SSIM box) is planned once with the gate's own numpy functions, so the torch score
equals the ONNX gate score up to float rounding (``tests/test_attack.py`` holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gate.model.losses import blur, gaussian_kernel, ssim_map
from gate.model.unet import UNetGenerator
from gate.verify.modelcard import ModelCard
from gate.verify.recnet import RecNetSession
from gate.verify.ssim import strip_bbox, window_radius
from gate.verify.strip import boundary_strip, has_boundary
from gate.verify.tiles import TileGrid, plan_tiles
from gate.verify.verifier import card_frame_scores, frame_inputs


def symmetric_index(size: int, before: int, after: int) -> np.ndarray:
    """Source index of every padded position for numpy's ``symmetric`` padding (d c b a | a b c d)."""
    idx = np.arange(-before, size + after) % (2 * size)
    return np.where(idx >= size, 2 * size - 1 - idx, idx).astype(np.int64)


@dataclass(frozen=True)
class FramePlan:
    """What the gate derives from the mask alone: an attack on the image cannot change it."""

    mask: np.ndarray  # bool [H, W]
    strip: np.ndarray  # bool [H, W]
    grid: TileGrid
    box: tuple[slice, slice]  # the strip's bounding box grown by the SSIM window radius
    ceiling_box: tuple[slice, slice]  # grown by the SSIM and the blur radius (score ssim_gain)
    rows: torch.Tensor  # padded row -> frame row
    cols: torch.Tensor  # padded col -> frame col


def plan_frame(mask: np.ndarray, card: ModelCard) -> FramePlan | None:
    """Strip, tile grid and SSIM box of ``mask`` as the gate computes them; None without a boundary."""
    mask = np.asarray(mask, dtype=bool)
    if not has_boundary(mask):
        return None
    strip = boundary_strip(mask, card.strip_width)
    grid = plan_tiles(strip, card.tile_size)
    box = strip_bbox(strip, window_radius(card.ssim_sigma))
    ceiling_box = strip_bbox(strip, window_radius(card.ssim_sigma) + window_radius(card.blur_sigma))
    if box is None or ceiling_box is None:
        return None
    (top, bottom), (left, right) = grid.pad
    height, width = mask.shape
    return FramePlan(
        mask=mask,
        strip=strip,
        grid=grid,
        box=box,
        ceiling_box=ceiling_box,
        rows=torch.from_numpy(symmetric_index(height, top, bottom)),
        cols=torch.from_numpy(symmetric_index(width, left, right)),
    )


class StripScorer:
    """Differentiable strip-SSIM score of a normalised frame for a fixed mask (the gate's frame score)."""

    def __init__(self, generator: UNetGenerator, card: ModelCard) -> None:
        self.generator = generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.card = card

    def plan(self, mask: np.ndarray) -> FramePlan | None:
        return plan_frame(mask, self.card)

    def score(self, image: torch.Tensor, plan: FramePlan) -> torch.Tensor:
        """Scalar strip SSIM (float64) of the normalised ``image`` [H, W]; gradients flow to ``image``."""
        t = self.card.tile_size
        strip = torch.from_numpy(plan.strip.astype(np.float32))
        mask = torch.from_numpy(plan.mask.astype(np.float32))
        blanked = image * (1.0 - strip)
        planes = torch.stack([blanked, mask])
        padded = planes.index_select(1, plan.rows).index_select(2, plan.cols)
        tiles = torch.stack([padded[:, r : r + t, c : c + t] for r, c in plan.grid.origins.tolist()])
        recs = self.generator(tiles)[:, 0]
        canvas = torch.zeros(padded.shape[1:], dtype=recs.dtype)
        for (r, c), rec in zip(plan.grid.origins.tolist(), recs, strict=True):
            canvas[r : r + t, c : c + t] = rec
        (top, _), (left, _) = plan.grid.pad
        height, width = plan.mask.shape
        painted = canvas[top : top + height, left : left + width]
        composite = torch.where(strip.bool(), painted, image)
        rs, cs = plan.box
        local_strip = torch.from_numpy(plan.strip[rs, cs])
        ssim = ssim_map(
            composite[rs, cs].double()[None, None],
            image[rs, cs].double()[None, None],
            sigma=self.card.ssim_sigma,
        )[0, 0]
        value = ssim[local_strip].mean()
        if self.card.score == "ssim_gain":
            value = value - self.blur_ceiling(image, plan)
        return value

    def blur_ceiling(self, image: torch.Tensor, plan: FramePlan) -> torch.Tensor:
        """:func:`gate.verify.ssim.blurred_strip_ssim` in torch: it depends on the image, so an attacker
        moves it too."""
        rs, cs = plan.ceiling_box
        img = image[rs, cs].double()[None, None]
        local_strip = torch.from_numpy(plan.strip[rs, cs])
        blurred = blur(img, gaussian_kernel(self.card.blur_sigma))
        stitched = torch.where(local_strip, blurred[0, 0], img[0, 0])
        ssim = ssim_map(stitched[None, None], img, sigma=self.card.ssim_sigma)[0, 0]
        return ssim[local_strip].mean()


def gate_frame_score(session: RecNetSession, image_norm: np.ndarray, mask: np.ndarray) -> float | None:
    """The gate's own frame score (numpy + ONNX) of an already normalised frame; None without a boundary.

    The same functions as :meth:`gate.verify.verifier.Verifier.score_frame`, minus the normalisation, so
    that an attacked normalised frame is judged exactly as the gate judges a normalised source frame.
    """
    mask = np.asarray(mask, dtype=bool)
    if not has_boundary(mask):
        return None
    card = session.card
    strip = boundary_strip(mask, card.strip_width)
    inputs = frame_inputs(np.asarray(image_norm, dtype=np.float32), mask, strip, card.tile_size)
    recs = session.reconstruct(inputs.batch)
    score, _, _ = card_frame_scores(inputs, recs, card)
    return score
