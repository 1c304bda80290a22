"""Decode a SEG and its source instances from spool files into a ``VerificationInput``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut

from gate.assemble.references import read_segment_masks
from gate.assemble.validate import (
    PIXEL_ERRORS,
    check_image_geometry,
    check_pixel_data_length,
    check_same_study,
    one_line,
    read_dataset,
)
from gate.errors import InvalidObjectError
from gate.verify.inputs import VerificationInput

__all__ = ["load_verification_input", "read_dataset", "source_pixels"]


def source_pixels(ds: Dataset) -> np.ndarray:
    """The 2-D frame of a single-frame source image in modality units (Rescale Slope/Intercept)."""
    check_image_geometry(ds)
    check_pixel_data_length(ds)
    try:
        arr = ds.pixel_array
    except PIXEL_ERRORS as exc:
        raise InvalidObjectError(
            f"source {ds.get('SOPInstanceUID', '?')} pixel data cannot be decoded: {one_line(exc)}"
        ) from exc
    if arr.ndim != 2:
        raise InvalidObjectError(
            f"source {ds.get('SOPInstanceUID', '?')} has pixel data of shape {arr.shape}; only single-frame "
            "greyscale sources are supported"
        )
    try:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    except PIXEL_ERRORS as exc:
        raise InvalidObjectError(
            f"source {ds.get('SOPInstanceUID', '?')} modality LUT cannot be applied: {one_line(exc)}"
        ) from exc


def load_verification_input(seg: Dataset, sources: Mapping[str, Dataset]) -> VerificationInput:
    """Build the verifier's input from a decoded SEG and its decoded sources (by SOP Instance UID)."""
    check_same_study(seg, sources)
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
