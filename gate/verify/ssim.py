"""SSIM between a reconstruction and the original image, judged on the strip only.

arXiv 2310.16999 judges a segmentation by a fixed mathematical measure, SSIM (Wang et al. 2004), between
the REC-Net reconstruction and the original, instead of a learned regression network that could be fooled.
The definition here is exactly skimage's ``structural_similarity(gaussian_weights=True, sigma=sigma,
use_sample_covariance=False, data_range=data_range, full=True)`` map, so that training (which may use
skimage or a torch port) and the gate agree number for number; ``tests/test_ssim.py`` holds it to that.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Stabilising constants of Wang et al. 2004 (eq. 13), as skimage uses them.
K1 = 0.01
K2 = 0.03
# Gaussian window truncated at 3.5 sigma: the 11x11 window of Wang et al. for sigma = 1.5.
TRUNCATE = 3.5
# Boundary handling of the Gaussian window at the image edge, as skimage does it.
_FILTER_MODE = "reflect"


def window_radius(sigma: float) -> int:
    """Radius in pixels of the truncated Gaussian window (as scipy.ndimage computes it)."""
    return int(TRUNCATE * sigma + 0.5)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of equal shape, got {a.shape} and {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"SSIM is computed on 2-D frames, got shape {a.shape}")


def ssim_map(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5, data_range: float = 1.0) -> np.ndarray:
    """Per-pixel SSIM of two 2-D images (float64), Gaussian-weighted, population covariance.

    Equal to the ``full=True`` map of skimage's ``structural_similarity`` with ``gaussian_weights=True``
    and ``use_sample_covariance=False`` (the covariance of Wang et al. 2004).
    """
    _check_pair(a, b)
    if sigma <= 0:
        raise ValueError(f"SSIM sigma must be > 0, got {sigma}")
    if data_range <= 0:
        raise ValueError(f"SSIM data_range must be > 0, got {data_range}")
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=sigma, truncate=TRUNCATE, mode=_FILTER_MODE)

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return numerator / denominator


def strip_bbox(strip: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Bounding box of the strip grown by ``margin`` pixels and clipped to the frame; None if empty."""
    rows = np.flatnonzero(strip.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(strip.any(axis=0))
    height, width = strip.shape
    return (
        slice(max(0, int(rows[0]) - margin), min(height, int(rows[-1]) + 1 + margin)),
        slice(max(0, int(cols[0]) - margin), min(width, int(cols[-1]) + 1 + margin)),
    )


def strip_ssim(
    reconstruction: np.ndarray,
    image: np.ndarray,
    strip: np.ndarray,
    *,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> float:
    """Mean SSIM over the strip pixels between the composite and the original image.

    The composite is the original outside the strip and ``reconstruction`` inside it (arXiv 2310.16999,
    sec. 2): only what the network painted may differ, so a full-frame reconstruction and an already
    stitched composite give the same score. The SSIM map is computed on the strip's bounding box grown
    by the window radius only, so the cost follows the boundary length rather than the image area; every
    window centred on a strip pixel lies inside that box, or meets the frame edge exactly where the
    full-frame computation does (same reflection), so the values equal the full-frame map's.
    """
    _check_pair(reconstruction, image)
    strip = np.asarray(strip, dtype=bool)
    if strip.shape != image.shape:
        raise ValueError(f"strip shape {strip.shape} differs from image shape {image.shape}")
    box = strip_bbox(strip, window_radius(sigma))
    if box is None:
        raise ValueError("strip is empty: there is no boundary to judge")
    img = np.asarray(image, dtype=np.float64)[box]
    local_strip = strip[box]
    composite = np.where(local_strip, np.asarray(reconstruction, dtype=np.float64)[box], img)
    local_map = ssim_map(composite, img, sigma=sigma, data_range=data_range)
    return float(local_map[local_strip].mean())


def blurred_strip_ssim(
    image: np.ndarray, strip: np.ndarray, *, sigma: float = 1.5, blur_sigma: float = 1.5
) -> float:
    """Strip SSIM of the original with its strip pixels replaced by their Gaussian blur: the blur ceiling.

    A blur of the true pixels is the reconstruction of a painter who knows the hidden strip but not its
    fine texture and noise. Its SSIM is high on a strip over flat, quiet tissue and low over a sharp edge
    or a noisy image — exactly what makes raw strip SSIM vary from one image and structure to the next
    whatever the mask. The gate's ``ssim_gain`` score subtracts it from the strip SSIM
    (:func:`gate.verify.verifier.frame_scores`): > 0 means the REC-Net, knowing only the mask and the pixels
    around the strip, painted it more faithfully than a blur of the true pixels would.
    The blur is computed on the strip's box grown by both window radii, so the values used equal those of a
    full-frame blur.
    """
    strip = np.asarray(strip, dtype=bool)
    if blur_sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {blur_sigma}")
    box = strip_bbox(strip, window_radius(sigma) + window_radius(blur_sigma))
    if box is None:
        raise ValueError("strip is empty: there is no boundary to judge")
    img = np.asarray(image, dtype=np.float64)[box]
    blurred = ndimage.gaussian_filter(img, sigma=blur_sigma, truncate=TRUNCATE, mode=_FILTER_MODE)
    return strip_ssim(blurred, img, strip[box], sigma=sigma)
