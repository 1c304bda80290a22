"""Checks that keep a malformed object from getting further than a readable reason.

Every object here came over the network. The checks are cheap and run before any pixel data is
decoded: the Storage SCP uses them to answer a C-STORE (PS3.4 B.2.3), assembly uses them again on
what is in the spool. They raise :class:`~gate.errors.InvalidObjectError` and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID

from gate.dicom import is_seg
from gate.errors import InvalidObjectError


def one_line(exc: BaseException) -> str:
    """A library's error message on one line (pydicom's plugin errors span several), for the
    recorded reason and for ``gate verify``'s one-line answer."""
    return " ".join(str(exc).split())


# What pydicom raises on bytes it cannot parse into elements (truncated, garbage, wrong lengths).
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    AttributeError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    EOFError,
    OverflowError,
    NotImplementedError,
    struct.error,
)
# What pydicom and its pixel data plugins (pylibjpeg, openjpeg, libjpeg, pyjpegls) raise on pixel
# data they cannot decode.
PIXEL_ERRORS = (
    ValueError,
    AttributeError,
    RuntimeError,
    NotImplementedError,
    KeyError,
    TypeError,
    IndexError,
)

# Rows/Columns beyond this are not an image the gate can verify (the largest CT/MR matrix is 2048;
# whole-slide tiles are smaller still); zero is not an image at all (PS3.3 C.7.6.3: US, > 0).
MAX_DIMENSION = 16384
# Far above any SEG (a BINARY SEG has one frame per segment per source frame).
MAX_FRAMES = 2**20


def read_dataset(path: Path) -> Dataset:
    """Read and fully parse a DICOM file; anything pydicom cannot parse is an InvalidObjectError."""
    try:
        ds = dcmread(path)
    except PARSE_ERRORS as exc:
        raise InvalidObjectError(f"{path.name} cannot be read as DICOM: {one_line(exc)}") from exc
    ensure_parsed(ds, path.name)
    return ds


def parse_dataset(data: bytes, name: str = "data") -> Dataset:
    """:func:`read_dataset` for bytes in memory (a Part 10 file)."""
    try:
        ds = dcmread(BytesIO(data))
    except PARSE_ERRORS as exc:
        raise InvalidObjectError(f"{name} cannot be read as DICOM: {one_line(exc)}") from exc
    ensure_parsed(ds, name)
    return ds


def ensure_parsed(ds: Dataset, name: str = "data set") -> None:
    """Convert every element, nested sequences included, now.

    pydicom parses values lazily, so a malformed element would otherwise fail wherever it is first
    touched — in the middle of assembly. After this returns, reading any attribute is safe.
    """
    try:
        for _ in ds.iterall():
            pass
    except PARSE_ERRORS as exc:
        # Not ds.get(...) here: that could touch the malformed element again.
        raise InvalidObjectError(f"{name}: malformed element: {one_line(exc)}") from exc


def _int_attr(ds: Dataset, keyword: str) -> int | None:
    if keyword not in ds:
        return None
    value = ds[keyword].value
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidObjectError(
            f"{ds.get('SOPInstanceUID', '?')}: {keyword} {str(value)[:32]!r} is not a number"
        ) from exc


def check_image_geometry(ds: Dataset) -> None:
    """Rows and Columns in 1..MAX_DIMENSION and Number of Frames in 1..MAX_FRAMES when present.

    A data set that fails this parses, but is no image of its SOP class (answer 0xA900).
    """
    uid = ds.get("SOPInstanceUID", "?")
    for keyword in ("Rows", "Columns"):
        value = _int_attr(ds, keyword)
        if value is not None and not 1 <= value <= MAX_DIMENSION:
            raise InvalidObjectError(f"{uid}: {keyword} {value} is outside 1..{MAX_DIMENSION}")
    frames = _int_attr(ds, "NumberOfFrames")
    if frames is not None and not 1 <= frames <= MAX_FRAMES:
        raise InvalidObjectError(f"{uid}: Number of Frames {frames} is outside 1..{MAX_FRAMES}")
    for keyword, allowed in (("BitsAllocated", (1, 8, 16, 32, 64)), ("SamplesPerPixel", (1, 3))):
        value = _int_attr(ds, keyword)
        if value is not None and value not in allowed:
            raise InvalidObjectError(f"{uid}: {keyword} {value} is not one of {allowed}")


def check_pixel_data_length(ds: Dataset, transfer_syntax: UID | None = None) -> None:
    """Pixel data must hold what the header promises: every byte of every frame (native), or at
    least one fragment per frame (encapsulated). Shorter means truncated (answer 0xC000).

    ``transfer_syntax`` defaults to the file meta's (a data set off the network has none). Call
    after :func:`check_image_geometry`.
    """
    uid = ds.get("SOPInstanceUID", "?")
    if "Rows" not in ds and "PixelData" not in ds:
        return  # not an image (an SR, a presentation state…)
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return  # a parametric map: not a source the gate decodes
    if "PixelData" not in ds:
        raise InvalidObjectError(f"{uid}: image without Pixel Data (truncated?)")
    rows, cols = _int_attr(ds, "Rows"), _int_attr(ds, "Columns")
    if rows is None or cols is None:
        raise InvalidObjectError(f"{uid}: Pixel Data without Rows and Columns")
    frames = _int_attr(ds, "NumberOfFrames") or 1
    value = ds.PixelData
    if not isinstance(value, bytes):
        raise InvalidObjectError(f"{uid}: Pixel Data is not a byte string")
    tsyntax = transfer_syntax or getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        # str(): a malformed file meta can carry the UID under another VR (a PersonName, say).
        encapsulated = tsyntax is not None and UID(str(tsyntax)).is_encapsulated
    except (ValueError, TypeError) as exc:  # pydicom: "UID is not a transfer syntax"
        raise InvalidObjectError(f"{uid}: {str(tsyntax)[:64]!r} is not a transfer syntax") from exc
    if encapsulated:
        try:
            buffer = BytesIO(value)
            parse_basic_offsets(buffer)  # skips the Basic Offset Table item
            fragments, _ = parse_fragments(buffer)
        except PARSE_ERRORS as exc:
            raise InvalidObjectError(f"{uid}: encapsulated Pixel Data is malformed: {one_line(exc)}") from exc
        if fragments < frames:
            raise InvalidObjectError(f"{uid}: {frames} frame(s) but only {fragments} Pixel Data fragment(s)")
        return
    bits = _int_attr(ds, "BitsAllocated") or 8
    samples = _int_attr(ds, "SamplesPerPixel") or 1
    expected = (rows * cols * frames * samples * bits + 7) // 8
    if len(value) < expected:
        raise InvalidObjectError(
            f"{uid}: Pixel Data holds {len(value)} bytes, the header needs {expected} (truncated?)"
        )


def sop_class_content_mismatch(ds: Dataset, sop_class_uid: str) -> str | None:
    """Why ``ds`` is not an object of ``sop_class_uid``, as far as the gate can tell cheaply; None
    when nothing is wrong. A SEG must carry a Segmentation Type and a Segment Sequence (PS3.3
    C.8.20.2, Type 1); anything else must not, or it would reach the PACS without verification."""
    has_seg_content = "SegmentationType" in ds or "SegmentSequence" in ds
    if is_seg(sop_class_uid):
        missing = [kw for kw in ("SegmentationType", "SegmentSequence") if kw not in ds]
        if missing:
            return f"SEG SOP class without {' and '.join(missing)}"
    elif has_seg_content:
        return "SEG content under a non-SEG SOP class"
    return None


def check_same_study(seg: Dataset, sources: Mapping[str, Dataset]) -> None:
    """A SEG and all of its sources belong to one study (PS3.3 C.8.20: a SEG is a series of the
    study it segments); a SEG spanning two studies would pass one patient's verdict to another."""
    seg_uid = seg.get("SOPInstanceUID", "?")
    studies = sorted({str(ds.get("StudyInstanceUID", "")) for ds in sources.values()})
    if len(studies) > 1:
        raise InvalidObjectError(
            f"SEG {seg_uid} references sources that span {len(studies)} studies: {', '.join(studies[:3])}"
        )
    seg_study = str(seg.get("StudyInstanceUID", ""))
    if studies and seg_study != studies[0]:
        raise InvalidObjectError(
            f"SEG {seg_uid} StudyInstanceUID {seg_study} differs from its sources' study {studies[0]}"
        )
