"""Paint synthetic structures with exactly known masks into real image backgrounds.

The gate's method (arXiv 2310.16999) judges a mask by how well the REC-Net repaints the strip around
its boundary. To train and test that we need images whose true boundary is known to the pixel, yet
whose surroundings look like real anatomy: we take a real slice as background and paint blobs into it.

The painted edge is soft (like the partial-volume edge of a real structure), but built from the signed
distance to the mask so that the 0.5 level of the soft mask lies exactly on the mask's boundary:
thresholding the soft mask at 0.5 gives back the given mask, pixel for pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

_N_HARMONICS = 4  # harmonics 2..5 of the polar radius: lumpy but still star-shaped, like a lesion


def blob_mask(
    shape: tuple[int, int],
    center: tuple[float, float],
    radii: tuple[float, float],
    rng: np.random.Generator,
    *,
    irregularity: float = 0.2,
    angle: float | None = None,
) -> np.ndarray:
    """Return a boolean mask of an irregular, ellipse-like blob.

    The blob is an ellipse (``radii`` = (row, col) semi-axes in pixels, rotated by ``angle`` radians,
    random when None) whose polar radius is perturbed by a few random low harmonics, with relative
    amplitude ``irregularity``. Real lesions are neither circles nor ellipses; a smooth perturbation
    keeps the boundary plausible while the shape stays star-shaped around ``center`` (so it is one
    connected piece for irregularity < 1). The same ``rng`` state always gives the same mask.
    """
    if not 0.0 <= irregularity < 1.0:
        raise ValueError(f"irregularity must be in [0, 1), got {irregularity}")
    if min(radii) <= 0:
        raise ValueError(f"radii must be positive, got {radii}")
    theta0 = float(rng.uniform(0.0, np.pi)) if angle is None else float(angle)
    orders = np.arange(2, 2 + _N_HARMONICS)
    amplitudes = rng.normal(size=_N_HARMONICS) / orders  # 1/k decay: smoother higher harmonics
    phases = rng.uniform(0.0, 2.0 * np.pi, size=_N_HARMONICS)
    norm = float(np.sum(np.abs(amplitudes))) or 1.0
    amplitudes *= irregularity / norm  # bounds the perturbation to +-irregularity

    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dr, dc = rows - center[0], cols - center[1]
    cos_t, sin_t = np.cos(theta0), np.sin(theta0)
    u = (dr * cos_t + dc * sin_t) / radii[0]
    v = (-dr * sin_t + dc * cos_t) / radii[1]
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    boundary = 1.0 + np.tensordot(amplitudes, np.cos(orders[:, None, None] * phi + phases[:, None, None]), 1)
    return rho <= boundary


def soft_mask(mask: np.ndarray, edge_sigma: float) -> np.ndarray:
    """Return the soft (partial-volume) version of ``mask``, float32 in (0, 1).

    The value is a Gaussian edge profile of the signed distance to the boundary, which lies half a pixel
    outside every boundary pixel of the mask; so ``soft_mask(m, s) > 0.5`` equals ``m`` exactly, unlike a
    Gaussian blur of the mask, whose 0.5 level erodes thin parts and rounds corners.
    """
    mask = np.asarray(mask, dtype=bool)
    if edge_sigma <= 0 or not mask.any() or mask.all():
        return mask.astype(np.float32)
    inside = ndimage.distance_transform_edt(mask) - 0.5
    outside = ndimage.distance_transform_edt(~mask) - 0.5
    signed = np.where(mask, inside, -outside)
    return (0.5 * (1.0 + special.erf(signed / (np.sqrt(2.0) * edge_sigma)))).astype(np.float32)


def paint_structure(
    background: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    contrast: float,
    edge_sigma: float = 0.8,
    texture: float = 0.02,
) -> np.ndarray:
    """Paint a structure of signed ``contrast`` into ``background`` (float in [0, 1]) where ``mask`` is.

    Inside, intensity is ``(background + contrast) * (1 + texture * n)`` with ``n`` smooth unit-variance
    noise, so the structure keeps the background's anatomy under it and gets a mild texture of its own;
    the transition is :func:`soft_mask` with ``edge_sigma``, so the boundary is exactly where the mask
    says. The result is clipped to [0, 1]: keep ``background + contrast`` inside that range where the
    exact contrast matters.
    """
    background = np.asarray(background, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if background.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from background shape {background.shape}")
    soft = soft_mask(mask, edge_sigma)
    noise = ndimage.gaussian_filter(rng.normal(size=background.shape), sigma=1.0)
    noise /= float(noise.std()) or 1.0
    inside = (background + contrast) * (1.0 + texture * noise)
    painted = background + soft * (inside - background)
    return np.clip(painted, 0.0, 1.0).astype(np.float32)
