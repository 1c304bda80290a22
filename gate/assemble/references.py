"""What a SEG references and what its segments are, read from the SEG dataset itself.

Completeness is decided from these references (PS3.3 C.8.20 Segmentation, the Common Instance
Reference module and the per-frame Derivation Image sequence), not from an idle timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import highdicom as hd
import numpy as np
from pydicom import Dataset

from gate.errors import InvalidObjectError
from gate.verify.inputs import SegmentMasks


def referenced_source_uids(seg: Dataset) -> list[str]:
    """SOP Instance UIDs of every source instance the SEG names, in first-seen order.

    Union of the Referenced Series Sequence (Common Instance Reference module) and each frame's
    Derivation Image → Source Image Sequence, so that a SEG that fills only one of them (several
    tools do) is still assembled correctly.
    """
    seen: dict[str, None] = {}
    for series in getattr(seg, "ReferencedSeriesSequence", []) or []:
        for inst in getattr(series, "ReferencedInstanceSequence", []) or []:
            uid = getattr(inst, "ReferencedSOPInstanceUID", None)
            if uid:
                seen[str(uid)] = None
    for uid in _per_frame_source_uids(seg):
        seen[uid] = None
    return list(seen)


def _per_frame_source_uids(seg: Dataset) -> Iterable[str]:
    shared = getattr(seg, "SharedFunctionalGroupsSequence", None)
    groups = list(getattr(seg, "PerFrameFunctionalGroupsSequence", []) or [])
    if shared:
        groups.append(shared[0])
    for group in groups:
        for derivation in getattr(group, "DerivationImageSequence", []) or []:
            for source in getattr(derivation, "SourceImageSequence", []) or []:
                uid = getattr(source, "ReferencedSOPInstanceUID", None)
                if uid:
                    yield str(uid)


def read_segment_masks(seg: Dataset, image_shapes: Mapping[str, tuple[int, int]]) -> tuple[SegmentMasks, ...]:
    """Decode every segment of ``seg`` into per-source-frame boolean masks.

    BINARY, FRACTIONAL (thresholded at 0.5 of the maximum fractional value) and LABELMAP SEGs are
    read through highdicom. ``image_shapes`` maps each available source SOP Instance UID to its
    (rows, columns); a SEG whose frames do not match its sources' size is rejected.
    """
    try:
        segmentation = hd.seg.Segmentation.from_dataset(seg, copy=True)
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise InvalidObjectError(f"SEG {seg.get('SOPInstanceUID', '?')} cannot be decoded: {exc}") from exc
    numbers = [int(item.SegmentNumber) for item in getattr(seg, "SegmentSequence", [])]
    if not numbers:
        raise InvalidObjectError(f"SEG {seg.SOPInstanceUID} has no segments (empty Segment Sequence)")
    framed_uids = list(dict.fromkeys(_per_frame_source_uids(seg)))
    if not framed_uids:
        raise InvalidObjectError(f"SEG {seg.SOPInstanceUID} has no per-frame source image references")
    missing = [uid for uid in framed_uids if uid not in image_shapes]
    if missing:
        raise InvalidObjectError(f"SEG {seg.SOPInstanceUID} references unavailable sources: {missing[:5]}")
    rows, cols = int(seg.Rows), int(seg.Columns)
    wrong = [uid for uid in framed_uids if tuple(image_shapes[uid]) != (rows, cols)]
    if wrong:
        raise InvalidObjectError(
            f"SEG {seg.SOPInstanceUID} frames are {rows}x{cols} but source {wrong[0]} is "
            f"{image_shapes[wrong[0]][0]}x{image_shapes[wrong[0]][1]}"
        )
    try:
        pixels = segmentation.get_pixels_by_source_instance(
            source_sop_instance_uids=framed_uids,
            segment_numbers=numbers,
            combine_segments=False,
            rescale_fractional=True,
            dtype=np.float32,
        )
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InvalidObjectError(f"SEG {seg.SOPInstanceUID} frames cannot be read: {exc}") from exc
    labels = {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence}
    segments = []
    for k, number in enumerate(numbers):
        masks = {uid: pixels[i, :, :, k] >= 0.5 for i, uid in enumerate(framed_uids)}
        segments.append(SegmentMasks(number=number, label=labels[number] or f"segment {number}", masks=masks))
    return tuple(segments)
