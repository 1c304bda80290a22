"""Decode a SEG and its source instances from files into a ``VerificationInput``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from gate.assemble.references import read_segment_masks
from gate.errors import InvalidObjectError
from gate.verify.inputs import VerificationInput


def read_dataset(path: Path) -> Dataset:
    try:
        return dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InvalidObjectError(f"{path.name} cannot be read as DICOM: {exc}") from exc


def source_pixels(ds: Dataset) -> np.ndarray:
    """The 2-D frame of a single-frame source image in modality units (Rescale Slope/Intercept)."""
    try:
        arr = ds.pixel_array
    except (ValueError, AttributeError, RuntimeError, NotImplementedError) as exc:
        raise InvalidObjectError(
            f"source {ds.get('SOPInstanceUID', '?')} pixel data cannot be decoded: {exc}"
        ) from exc
    if arr.ndim != 2:
        raise InvalidObjectError(
            f"source {ds.SOPInstanceUID} has pixel data of shape {arr.shape}; only single-frame "
            "greyscale sources are supported"
        )
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def load_verification_input(seg: Dataset, sources: Mapping[str, Dataset]) -> VerificationInput:
    """Build the verifier's input from a decoded SEG and its decoded sources (by SOP Instance UID)."""
    images = {uid: source_pixels(ds) for uid, ds in sources.items()}
    shapes = {uid: (int(img.shape[0]), int(img.shape[1])) for uid, img in images.items()}
    segments = read_segment_masks(seg, shapes)
    used = {uid for s in segments for uid in s.masks}
    return VerificationInput(
        seg_sop_instance_uid=str(seg.SOPInstanceUID),
        study_instance_uid=str(seg.StudyInstanceUID),
        images={uid: images[uid] for uid in used},
        segments=segments,
    )
