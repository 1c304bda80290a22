"""What a SEG references and what its segments are, read from the SEG dataset itself.

Completeness is decided from these references (PS3.3 C.8.20 Segmentation, the Common Instance
Reference module and the per-frame Derivation Image sequence), not from an idle timeout.

The SEG comes from the network, so nothing here trusts it: a malformed reference is skipped (and
named in the error when the SEG is decoded), and every failure while decoding it is an
:class:`~gate.errors.InvalidObjectError` whose message says what is wrong with which SEG.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sequence import Sequence

from gate.assemble.validate import check_image_geometry, check_pixel_data_length, one_line
from gate.errors import InvalidObjectError
from gate.store.spool import is_valid_uid
from gate.verify.inputs import SegmentMasks

log = logging.getLogger("gate.assemble")

# Third-party errors highdicom raises on SEGs it cannot make sense of; wrapped at this boundary.
_HIGHDICOM_ERRORS = (ValueError, AttributeError, KeyError, TypeError, IndexError, RuntimeError)
# Decoded masks (float32, one plane per segment and source frame) beyond this are refused rather
# than allowed to exhaust the worker's memory: a few hundred segments on a whole CT series.
MAX_DECODED_BYTES = 2**32
# Label Map SEG (Supplement 243): segment number 0 is the background, not a segment to verify.
_LABELMAP = "LABELMAP"


def items(ds: Dataset, keyword: str) -> list[Dataset]:
    """The items of sequence ``keyword`` in ``ds``; empty when absent or, in a malformed data set,
    when the element is not a sequence at all."""
    value = ds.get(keyword)
    if not isinstance(value, Sequence):
        return []
    return [item for item in value if isinstance(item, Dataset)]


def _uid_of(item: Dataset) -> str | None:
    value = item.get("ReferencedSOPInstanceUID")
    if value is None or isinstance(value, bytes | Sequence):
        return None
    text = str(value)
    return text or None


def referenced_source_uids(seg: Dataset) -> list[str]:
    """SOP Instance UIDs of every source instance the SEG names, in first-seen order.

    Union of the Referenced Series Sequence (Common Instance Reference module) and each frame's
    Derivation Image → Source Image Sequence, so that a SEG that fills only one of them (several
    tools do) is still assembled correctly. A reference that is not a valid UID (PS3.5 9.1; a
    hostile ``../``) is left out here, so that assembly never waits for it, and reported when the
    SEG's frames are decoded (:func:`read_segment_masks`). Never raises on a parsed data set.
    """
    seen: dict[str, None] = {}
    for series in items(seg, "ReferencedSeriesSequence"):
        for inst in items(series, "ReferencedInstanceSequence"):
            uid = _uid_of(inst)
            if uid:
                seen[uid] = None
    for uid in _per_frame_source_uids(seg):
        seen[uid] = None
    invalid = [uid for uid in seen if not is_valid_uid(uid)]
    if invalid:
        log.warning(
            "SEG %s: ignoring %d invalid source reference(s), e.g. %r",
            seg.get("SOPInstanceUID", "?"),
            len(invalid),
            invalid[0][:80],
        )
    return [uid for uid in seen if is_valid_uid(uid)]


def _per_frame_source_uids(seg: Dataset) -> Iterable[str]:
    groups = items(seg, "PerFrameFunctionalGroupsSequence") + items(seg, "SharedFunctionalGroupsSequence")[:1]
    for group in groups:
        for derivation in items(group, "DerivationImageSequence"):
            for source in items(derivation, "SourceImageSequence"):
                uid = _uid_of(source)
                if uid:
                    yield uid


def _segment_numbers(seg: Dataset) -> Iterator[tuple[int, str]]:
    labelmap = str(seg.get("SegmentationType", "")).upper() == _LABELMAP
    for item in items(seg, "SegmentSequence"):
        try:
            number = int(item.get("SegmentNumber"))
        except (TypeError, ValueError) as exc:
            raise InvalidObjectError(
                f"SEG {seg.get('SOPInstanceUID', '?')} has a segment without a valid Segment Number"
            ) from exc
        if labelmap and number == 0:
            continue  # the background of a Label Map SEG
        yield number, str(item.get("SegmentLabel", "") or "")


def read_segment_masks(seg: Dataset, image_shapes: Mapping[str, tuple[int, int]]) -> tuple[SegmentMasks, ...]:
    """Decode every segment of ``seg`` into per-source-frame boolean masks.

    BINARY, FRACTIONAL (thresholded at 0.5 of the maximum fractional value) and LABELMAP SEGs are
    read through highdicom. ``image_shapes`` maps each available source SOP Instance UID to its
    (rows, columns); a SEG whose frames do not match its sources' size is rejected. The cheap checks
    (geometry, segments, references) come before highdicom touches the pixel data, so that their
    reasons are the ones recorded.
    """

    sop_uid = seg.get("SOPInstanceUID", "?")
    if "PixelData" not in seg:
        raise InvalidObjectError(f"SEG {sop_uid} has no Pixel Data")
    check_image_geometry(seg)
    check_pixel_data_length(seg)  # also: Rows and Columns are present
    labels = dict(_segment_numbers(seg))
    if not labels:
        raise InvalidObjectError(f"SEG {sop_uid} has no segments (empty Segment Sequence)")
    framed_uids = list(dict.fromkeys(_per_frame_source_uids(seg)))
    if not framed_uids:
        raise InvalidObjectError(f"SEG {sop_uid} has no per-frame source image references")
    invalid = [uid for uid in framed_uids if not is_valid_uid(uid)]
    if invalid:
        raise InvalidObjectError(f"SEG {sop_uid} names an invalid source UID {invalid[0][:80]!r}")
    missing = [uid for uid in framed_uids if uid not in image_shapes]
    if missing:
        raise InvalidObjectError(f"SEG {sop_uid} references unavailable sources: {missing[:5]}")
    rows, cols = int(seg.Rows), int(seg.Columns)
    wrong = [uid for uid in framed_uids if tuple(image_shapes[uid]) != (rows, cols)]
    if wrong:
        raise InvalidObjectError(
            f"SEG {sop_uid} frames are {rows}x{cols} but source {wrong[0]} is "
            f"{image_shapes[wrong[0]][0]}x{image_shapes[wrong[0]][1]}"
        )
    numbers = list(labels)
    decoded = len(framed_uids) * rows * cols * len(numbers) * np.dtype(np.float32).itemsize
    if decoded > MAX_DECODED_BYTES:
        raise InvalidObjectError(
            f"SEG {sop_uid} would decode to {decoded / 2**30:.1f} GiB of masks "
            f"({len(numbers)} segments x {len(framed_uids)} frames of {rows}x{cols}); the limit is "
            f"{MAX_DECODED_BYTES / 2**30:.0f} GiB"
        )
    try:
        segmentation = hd.seg.Segmentation.from_dataset(seg, copy=True)
        pixels = segmentation.get_pixels_by_source_instance(
            source_sop_instance_uids=framed_uids,
            segment_numbers=numbers,
            combine_segments=False,
            rescale_fractional=True,
            dtype=np.float32,
        )
    except _HIGHDICOM_ERRORS as exc:
        raise InvalidObjectError(f"SEG {sop_uid} frames cannot be read: {one_line(exc)}") from exc
    segments = []
    for k, number in enumerate(numbers):
        masks = {uid: pixels[i, :, :, k] >= 0.5 for i, uid in enumerate(framed_uids)}
        segments.append(SegmentMasks(number=number, label=labels[number] or f"segment {number}", masks=masks))
    return tuple(segments)
