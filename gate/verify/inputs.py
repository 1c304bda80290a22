"""What the verifier needs from a SEG and its source instances, already decoded (no DICOM here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentMasks:
    """One segment of a SEG: its masks on the source frames it covers.

    ``masks`` maps a source SOP Instance UID to a 2-D boolean mask with the source frame's shape
    (FRACTIONAL segments are already thresholded at 0.5).
    """

    number: int
    label: str
    masks: dict[str, np.ndarray]


@dataclass(frozen=True)
class VerificationInput:
    """A SEG ready to verify: its segments and the pixel data of every source frame they reference.

    ``images`` maps a source SOP Instance UID to its 2-D pixel array in modality units (float).
    """

    seg_sop_instance_uid: str
    study_instance_uid: str
    images: dict[str, np.ndarray]
    segments: tuple[SegmentMasks, ...]
