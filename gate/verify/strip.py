"""The strip around a mask boundary that the REC-Net must paint back (arXiv 2310.16999, sec. 2)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# A 3x3 cross: each dilation/erosion step moves the boundary by one pixel along the axes, so a
# strip of width w reaches exactly w pixels (city-block distance) either side of the boundary.
_CROSS = ndimage.generate_binary_structure(2, 1)


def boundary_strip(mask: np.ndarray, width: int) -> np.ndarray:
    """Return dilate(mask, width) AND NOT erode(mask, width) as a boolean array.

    Pixels outside the image count as background, so a mask touching the image edge keeps a
    strip along that edge only where the mask really has a boundary inside the image.
    """
    if width < 1:
        raise ValueError(f"strip width must be >= 1 pixel, got {width}")
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    m = mask.astype(bool)
    if not m.any():
        return np.zeros_like(m)
    dilated = ndimage.binary_dilation(m, structure=_CROSS, iterations=width)
    # border_value=1 treats outside-the-image as foreground for erosion: the image edge is not a
    # mask boundary the network can be asked about.
    eroded = ndimage.binary_erosion(m, structure=_CROSS, iterations=width, border_value=1)
    return dilated & ~eroded


def has_boundary(mask: np.ndarray) -> bool:
    """True when the mask is neither empty nor covers the whole frame."""
    m = mask.astype(bool)
    return bool(m.any()) and not bool(m.all())
