"""Robust intensity normalisation shared by training and inference (the model card names it)."""

from __future__ import annotations

import numpy as np


def normalize_robust(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map the [low, high] percentile range of ``image`` to [0, 1] and clip, as float32.

    Percentiles rather than min/max so that a few hot pixels or metal do not squash the tissue
    contrast the reconstruction relies on.
    """
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-6:
        return np.zeros_like(img, dtype=np.float32)
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
