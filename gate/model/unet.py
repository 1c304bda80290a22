"""The REC-Net generator (a small U-Net) and its conditional PatchGAN discriminator.

pix2pix (Isola et al., CVPR 2017) as used by arXiv 2310.16999: the generator maps the two conditioning
channels [image with the boundary strip blanked, mask] to the reconstructed image; the discriminator
judges [conditioning channels, image] patch by patch. Kept small (about 0.5 M parameters) so the ONNX
file stays well under 5 MB and CPU inference on 64 x 64 tiles is cheap.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 2  # image with strip blanked, mask
OUT_CHANNELS = 1  # reconstructed image


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: a tile's output must not depend on the other tiles in its batch, and
    # inference batches mix tiles of many frames.
    return nn.GroupNorm(min(8, channels), channels)


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.LeakyReLU(0.2, inplace=True),
        )


class UNetGenerator(nn.Module):
    """U-Net with ``depth`` down levels, ``base`` channels at full resolution, sigmoid output in [0, 1].

    Tile size must be divisible by 2**depth.
    """

    def __init__(self, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.base = base
        self.depth = depth
        chans = [base * 2**i for i in range(depth + 1)]
        self.inc = _DoubleConv(IN_CHANNELS, chans[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _DoubleConv(chans[i], chans[i + 1])) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.up_convs = nn.ModuleList(_DoubleConv(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], OUT_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            h = conv(torch.cat([up(h), skips.pop()], dim=1))
        return torch.sigmoid(self.head(h))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: [mask-conditioned input (2 ch), image (1 ch)] -> logits per ~22 px patch."""

    def __init__(self, base: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(IN_CHANNELS + OUT_CHANNELS, base, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base, base * 2, 4, stride=2, padding=1, bias=False),
            _norm(base * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base * 2, base * 4, 3, stride=1, padding=1, bias=False),
            _norm(base * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base * 4, 1, 3, stride=1, padding=1),
        )

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], dim=1))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
