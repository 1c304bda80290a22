"""Reconstruction losses of the REC-Net, judged on the boundary strip as the verdict is.

arXiv 2310.16999's point is to train with SSIM (not MAE/L2) and to judge with the same SSIM. The torch
SSIM here is the definition of ``gate.verify.ssim.ssim_map`` (Gaussian window sigma 1.5 truncated at
3.5 sigma, population covariance, K1 = 0.01, K2 = 0.03, reflected edges), so that the training objective
equals 1 - the score the gate computes for a tile.
"""

from __future__ import annotations

from enum import StrEnum

import torch
import torch.nn.functional as F

from gate.verify.ssim import K1, K2, window_radius


class ReconstructionLoss(StrEnum):
    SSIM = "ssim"
    MAE = "mae"
    L2 = "l2"


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Separable 1-D Gaussian of radius ``window_radius(sigma)``, normalised to sum 1 (as scipy does)."""
    radius = window_radius(sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Gaussian filter of [N, 1, H, W] with scipy's 'reflect' edges (d c b a | a b c d)."""
    r = kernel.numel() // 2
    # torch 'reflect' omits the edge pixel (d c b | a b c d); scipy 'reflect' repeats it = torch 'symmetric',
    # which torch lacks: build it by concatenating flipped borders.
    x = torch.cat([x[..., :, :r].flip(-1), x, x[..., :, -r:].flip(-1)], dim=-1)
    x = torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
    kh = kernel.to(x).view(1, 1, 1, -1)
    kv = kernel.to(x).view(1, 1, -1, 1)
    return F.conv2d(F.conv2d(x, kh), kv)


def ssim_map(
    a: torch.Tensor, b: torch.Tensor, *, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """Per-pixel SSIM of [N, 1, H, W] tensors; equals ``gate.verify.ssim.ssim_map`` per image."""
    kernel = gaussian_kernel(sigma)
    ux, uy = blur(a, kernel), blur(b, kernel)
    vx = blur(a * a, kernel) - ux * ux
    vy = blur(b * b, kernel) - uy * uy
    vxy = blur(a * b, kernel) - ux * uy
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def composite(reconstruction: torch.Tensor, image: torch.Tensor, strip: torch.Tensor) -> torch.Tensor:
    """The original outside the strip, the reconstruction inside: what the gate scores."""
    return strip * reconstruction + (1.0 - strip) * image


def _strip_mean(values: torch.Tensor, strip: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over strip pixels, per tile, then over the batch (tiles weigh equally)."""
    per_tile = (values * strip).sum(dim=(1, 2, 3)) / strip.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per_tile.mean()


def strip_ssim(
    reconstruction: torch.Tensor, image: torch.Tensor, strip: torch.Tensor, *, sigma: float = 1.5
) -> torch.Tensor:
    """Mean strip SSIM of the composite against the original (the gate's frame score, per tile)."""
    return _strip_mean(ssim_map(composite(reconstruction, image, strip), image, sigma=sigma), strip)


def reconstruction_loss(
    kind: ReconstructionLoss | str,
    reconstruction: torch.Tensor,
    image: torch.Tensor,
    strip: torch.Tensor,
    *,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Loss on the strip only: outside it the gate keeps the original, so nothing else is ever judged.

    ``ssim``: 1 - strip SSIM of the composite (the paper's choice, and exactly 1 - the gate's score);
    ``mae`` / ``l2``: mean absolute / squared error over strip pixels (the baselines the paper argues
    against).
    """
    kind = ReconstructionLoss(kind)
    if kind is ReconstructionLoss.SSIM:
        return 1.0 - strip_ssim(reconstruction, image, strip, sigma=sigma)
    diff = reconstruction - image
    if kind is ReconstructionLoss.MAE:
        return _strip_mean(diff.abs(), strip)
    return _strip_mean(diff * diff, strip)
