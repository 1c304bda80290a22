"""A corpus of hostile and malformed input, and what a well-made DICOM node does with each case.

``python -m gate.synth.hostile OUTDIR`` writes the files and ``OUTDIR/manifest.json``. Every case
says what must happen to it, so that the tests (and anyone pointing another node at the corpus)
can check the gate against it:

- ``kind: "store"`` — objects sent by C-STORE in manifest order. Each object carries the C-STORE
  request it must be sent with (Affected SOP Class/Instance UID, transfer syntax) so that files a
  normal SCU would refuse to send (truncated, hostile UIDs) still reach the gate byte for byte:
  send the bytes after the file meta information as the data set. ``expect_status`` is the DIMSE
  status the gate must answer; ``expect_seg`` (when present) is the state and a fragment of the
  recorded reason the SEG must end with after assembly and verification.
- ``kind: "offline"`` — ``gate verify --images DIR --seg FILE`` must exit ``expect_exit`` with a
  one-line reason on stderr containing ``expect_stderr``. Files that cannot travel over the network
  in that form (a bad preamble: the network carries no preamble) are covered here.
- ``kind: "associate"`` — an A-ASSOCIATE-RQ whose 16-byte calling AE title field holds
  ``calling_ae_hex``; ``expect: "rejected"`` means no association may be established (A-ASSOCIATE-RJ
  or an abort) and the server must go on serving.

The statuses follow PS3.4 B.2.3: 0xC000 "Cannot understand" when the data set cannot be parsed
into elements (truncated, garbage, pixel data shorter than its header says, path characters in the
UIDs that name spool files); 0xA900 "Data Set does not match SOP Class" when it parses but is not
what its SOP class says (request and data set disagree, SEG content under an image class and vice
versa, Rows/Columns outside 1..16384). Anything that parses and could be a valid object is stored
with 0x0000, and what is wrong with it is recorded on the SEG's row as state ``error`` with a
readable reason (zero segments, frames of another size than the sources, sources in two studies,
a corrupt compressed stream that only fails when decoded) — as Orthanc or dcm4chee store what they
can parse and leave the meaning to the application. Compressed sources (RLE, JPEG-LS, JPEG 2000,
JPEG Lossless), RLE-compressed, Label Map and FRACTIONAL SEGs are accepted and verified.

Everything is synthetic and deterministic in its UIDs (derived from the case name), so the corpus
can be regenerated instead of checked in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    SegmentationStorage,
    generate_uid,
)
from pynetdicom.dsutils import split_dataset

from gate.net.status import StoreStatus
from gate.synth.seg import make_seg, segmented_property
from gate.synth.study import make_phantom, make_source_datasets

MANIFEST = "manifest.json"
N_SLICES = 4
DCMCJPEG = "/usr/bin/dcmcjpeg"  # DCMTK: the one JPEG Lossless (Process 14 SV1) encoder at hand


def uid(*parts: str) -> str:
    return str(generate_uid(entropy_srcs=["seg-quality-gate hostile corpus", *parts]))


@dataclass
class StoreObject:
    file: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    expect_status: StoreStatus

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sop_class_uid": self.sop_class_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "expect_status": int(self.expect_status),
            "expect_status_name": self.expect_status.name,
        }


@dataclass
class Case:
    name: str
    why: str
    kind: str = "store"
    objects: list[StoreObject] = field(default_factory=list)
    expect_seg: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "why": self.why}
        if self.kind == "store":
            out["objects"] = [o.as_json() for o in self.objects]
            if self.expect_seg is not None:
                out["expect_seg"] = self.expect_seg
        out.update(self.extra)
        return out


class CorpusWriter:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cases: list[Case] = []

    def path(self, case: str, name: str) -> Path:
        p = self.root / "cases" / case / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def save(self, case: str, name: str, ds: Dataset, expect: StoreStatus, **request: str) -> StoreObject:
        """Write ``ds`` as a Part 10 file; the C-STORE request defaults to what the data set says."""
        path = self.path(case, name)
        ds.save_as(path, enforce_file_format=True)
        return self.describe(path, ds, expect, **request)

    def describe(self, path: Path, ds: Dataset, expect: StoreStatus, **request: str) -> StoreObject:
        return StoreObject(
            file=path.relative_to(self.root).as_posix(),
            sop_class_uid=request.get("sop_class_uid", str(ds.SOPClassUID)),
            sop_instance_uid=request.get("sop_instance_uid", str(ds.SOPInstanceUID)),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
            expect_status=expect,
        )

    def add(self, case: Case) -> None:
        self.cases.append(case)

    def write_manifest(self) -> Path:
        path = self.root / MANIFEST
        manifest = {
            "version": 1,
            "called_ae_title": "QGATE",
            "cases": [c.as_json() for c in self.cases],
        }
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        return path


# -- building blocks --------------------------------------------------------------------------------


@dataclass
class Series:
    sources: list[Dataset]
    masks: dict[str, np.ndarray]

    @property
    def study_uid(self) -> str:
        return str(self.sources[0].StudyInstanceUID)


def make_series(seed: int) -> Series:
    phantom = make_phantom(seed, N_SLICES)
    return Series(make_source_datasets(phantom, seed), phantom.masks)


def clone(ds: Dataset) -> Dataset:
    return dcmread_bytes(to_bytes(ds))


def to_bytes(ds: Dataset) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dcmread_bytes(data: bytes) -> Dataset:
    from io import BytesIO

    return dcmread(BytesIO(data))


def renamed(ds: Dataset, case: str, role: str) -> Dataset:
    """A copy of ``ds`` with a SOP Instance UID of its own, so every case stores a new instance."""
    out = clone(ds)
    out.SOPInstanceUID = uid(case, role)
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out


def seg_of(series: Series, case: str, *, fractional: bool = False) -> Dataset:
    return make_seg(
        series.sources,
        series.masks,
        fractional=fractional,
        sop_instance_uid=uid(case, "seg"),
        series_instance_uid=uid(case, "seg-series"),
        series_description=f"hostile corpus: {case}",
    )


def labelmap_seg(series: Series, case: str) -> Dataset:
    """A Label Map SEG (Supplement 243; SOP class 1.2.840.10008.5.1.4.1.1.66.7): one frame per source,
    each pixel the number of its segment."""
    labels = np.zeros(series.masks[next(iter(series.masks))].shape, dtype=np.uint8)
    descriptions = []
    algorithm = hd.AlgorithmIdentificationSequence(
        name="HostileLabelMap", version="1", family=hd.sr.CodedConcept("239521000", "SCT", "AI")
    )
    for number, (label, mask) in enumerate(series.masks.items(), start=1):
        labels[mask] = number
        category, property_type = segmented_property(label)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=category,
                segmented_property_type=property_type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    return hd.seg.Segmentation(
        source_images=series.sources,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP,
        segment_descriptions=descriptions,
        series_instance_uid=uid(case, "seg-series"),
        series_number=300,
        sop_instance_uid=uid(case, "seg"),
        instance_number=1,
        manufacturer="seg-quality-gate",
        manufacturer_model_name="HostileLabelMap",
        software_versions="1",
        device_serial_number="0",
    )


def with_sources_renamed(series: Series, case: str) -> Series:
    """The same pixels and masks as a new series of a new study (UIDs derived from ``case``)."""
    study, series_uid = uid(case, "study"), uid(case, "series")
    sources = []
    for k, ds in enumerate(series.sources):
        out = renamed(ds, case, f"image-{k}")
        out.StudyInstanceUID = study
        out.SeriesInstanceUID = series_uid
        sources.append(out)
    return Series(sources, series.masks)


def compressed(series: Series, case: str, syntax: str) -> Series | None:
    out = with_sources_renamed(series, case)
    for k, ds in enumerate(out.sources):
        if syntax == JPEGLosslessSV1:
            # pydicom has no JPEG Lossless encoder; DCMTK's dcmcjpeg does it, when installed.
            if not Path(DCMCJPEG).exists():
                return None
            plain = to_bytes(ds)
            with _tempdir() as tmp:
                (tmp / "in.dcm").write_bytes(plain)
                subprocess.run([DCMCJPEG, "+e1", str(tmp / "in.dcm"), str(tmp / "out.dcm")], check=True)
                out.sources[k] = dcmread(tmp / "out.dcm")
                out.sources[k].PixelData  # noqa: B018 - read it before the folder goes
        else:
            ds.compress(syntax)
    return out


class _tempdir:
    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="hostile-")
        return Path(self._dir)

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def downsampled(series: Series) -> Series:
    """The same source UIDs with 128 x 128 pixels: to build a SEG whose frames do not fit its sources."""
    sources = []
    for ds in series.sources:
        small = clone(ds)
        arr = ds.pixel_array[::2, ::2].copy()
        small.Rows, small.Columns = arr.shape
        small.PixelSpacing = [float(v) * 2 for v in ds.PixelSpacing]
        small.PixelData = arr.tobytes()
        sources.append(small)
    masks = {label: m[:, ::2, ::2] for label, m in series.masks.items()}
    return Series(sources, masks)


def _seg_expect(seg: Dataset, state: str, reason: str = "") -> dict[str, str]:
    return {"sop_instance_uid": str(seg.SOPInstanceUID), "state": state, "reason_contains": reason}


def _sources(w: CorpusWriter, case: str, series: Series) -> list[StoreObject]:
    return [w.save(case, f"image-{k}.dcm", ds, StoreStatus.SUCCESS) for k, ds in enumerate(series.sources)]


def _truncate(w: CorpusWriter, case: str, name: str, ds: Dataset, cut_at: float) -> StoreObject:
    """Write ``ds`` cut at ``cut_at`` (bytes into its data set if >= 1, else a fraction of it)."""
    path = w.path(case, name)
    data = to_bytes(ds)
    path.write_bytes(data)
    _, offset = split_dataset(path)
    keep = int(cut_at) if cut_at >= 1 else int((len(data) - offset) * cut_at)
    path.write_bytes(data[: offset + keep])
    return w.describe(path, ds, StoreStatus.CANNOT_UNDERSTAND)


# -- the cases --------------------------------------------------------------------------------------


def build(root: Path) -> Path:
    """Write the corpus under ``root`` and return the manifest's path."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root / "cases", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    w = CorpusWriter(root)
    base = make_series(201)
    other = make_series(202)
    ok, c000, a900 = (
        StoreStatus.SUCCESS,
        StoreStatus.CANNOT_UNDERSTAND,
        StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
    )

    # The base study: a correct series and SEG. Later SEG cases reference these sources.
    good = seg_of(base, "base")
    w.add(
        Case(
            "base",
            "a well-formed series and SEG: stored and verified; the sources later cases reference",
            objects=[*_sources(w, "base", base), w.save("base", "seg.dcm", good, ok)],
            expect_seg=_seg_expect(good, "verified"),
        )
    )

    # -- refused at receive: cannot be parsed (0xC000) ---------------------------------------------
    seg = renamed(good, "truncated_header", "seg")
    w.add(
        Case(
            "truncated_header",
            "SEG cut 300 bytes into its data set: the study and series UIDs never arrive",
            objects=[_truncate(w, "truncated_header", "seg.dcm", seg, 300)],
        )
    )
    img = renamed(base.sources[0], "truncated_pixel_data", "image")
    w.add(
        Case(
            "truncated_pixel_data",
            "MR image cut in its Pixel Data: the value is shorter than its header says",
            objects=[_truncate(w, "truncated_pixel_data", "image.dcm", img, 0.97)],
        )
    )
    seg = renamed(good, "truncated_seg_pixel_data", "seg")
    w.add(
        Case(
            "truncated_seg_pixel_data",
            "SEG whose (bit-packed) Pixel Data stops early",
            objects=[_truncate(w, "truncated_seg_pixel_data", "seg.dcm", seg, 0.95)],
        )
    )
    j2k = compressed(base, "truncated_encapsulated", JPEG2000Lossless)
    assert j2k is not None
    w.add(
        Case(
            "truncated_encapsulated",
            "JPEG 2000 image cut inside its encapsulated Pixel Data (no sequence delimiter)",
            objects=[_truncate(w, "truncated_encapsulated", "image.dcm", j2k.sources[0], 0.5)],
        )
    )
    path = w.path("garbage_data_set", "garbage.bin")
    rng = np.random.default_rng(7)
    path.write_bytes(b"\x08\x00\x16\x00" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    w.add(
        Case(
            "garbage_data_set",
            "2 KiB of noise sent as the data set of an MR C-STORE (the file is the data set, no meta)",
            objects=[
                StoreObject(
                    path.relative_to(root).as_posix(),
                    str(MRImageStorage),
                    uid("garbage_data_set", "image"),
                    str(ExplicitVRLittleEndian),
                    c000,
                )
            ],
            extra={"raw_data_set": True},
        )
    )
    for case, attr, value, why in (
        ("uid_path_sop_instance", "SOPInstanceUID", "1.2.3/../../x", "SOP Instance UID with path characters"),
        (
            "uid_path_study",
            "StudyInstanceUID",
            "../../../tmp/evil",
            "Study Instance UID that climbs out of the spool",
        ),
        (
            "uid_non_ascii",
            "SOPInstanceUID",
            "1.2.826.\u00e9\u00e8",
            "SOP Instance UID with non-ASCII characters",
        ),
        (
            "uid_too_long",
            "SeriesInstanceUID",
            "1." + "2" * 70,
            "Series Instance UID of 72 characters (max 64)",
        ),
    ):
        img = renamed(base.sources[1], case, "image")
        setattr(img, attr, value)
        if attr == "SOPInstanceUID":
            img.file_meta.MediaStorageSOPInstanceUID = value
        w.add(Case(case, why + ": never becomes a path", objects=[w.save(case, "image.dcm", img, c000)]))

    # -- refused at receive: parses, but is not what its SOP class says (0xA900) --------------------
    img = renamed(base.sources[1], "sop_class_request_mismatch", "image")
    w.add(
        Case(
            "sop_class_request_mismatch",
            "MR image sent in a C-STORE whose Affected SOP Class is CT Image Storage",
            objects=[
                w.save(
                    "sop_class_request_mismatch", "image.dcm", img, a900, sop_class_uid=str(CTImageStorage)
                )
            ],
        )
    )
    img = renamed(base.sources[1], "seg_class_image_content", "image")
    img.SOPClassUID = SegmentationStorage
    img.file_meta.MediaStorageSOPClassUID = SegmentationStorage
    w.add(
        Case(
            "seg_class_image_content",
            "an MR image that calls itself Segmentation Storage (no Segment Sequence, no Segmentation Type)",
            objects=[w.save("seg_class_image_content", "image.dcm", img, a900)],
        )
    )
    seg = renamed(good, "image_class_seg_content", "seg")
    seg.SOPClassUID = MRImageStorage
    seg.file_meta.MediaStorageSOPClassUID = MRImageStorage
    w.add(
        Case(
            "image_class_seg_content",
            "a SEG that calls itself MR Image Storage: it would bypass verification",
            objects=[w.save("image_class_seg_content", "seg.dcm", seg, a900)],
        )
    )
    for case, attr, value, src in (
        ("rows_zero", "Rows", 0, base.sources[2]),
        ("columns_absurd", "Columns", 65535, base.sources[2]),
        ("seg_rows_zero", "Rows", 0, good),
        ("seg_frames_absurd", "NumberOfFrames", 10**9, good),
    ):
        ds = renamed(src, case, "object")
        setattr(ds, attr, value)
        w.add(
            Case(
                case,
                f"{attr} = {value}: outside 1..16384 (frames: more than any pixel data can hold)",
                objects=[w.save(case, "object.dcm", ds, a900)],
            )
        )

    # -- stored, then recorded as an error with a readable reason ------------------------------------
    seg = renamed(good, "zero_segments", "seg")
    seg.SegmentSequence = []
    w.add(
        Case(
            "zero_segments",
            "SEG with an empty Segment Sequence (Type 1): nothing to verify, never forwarded",
            objects=[w.save("zero_segments", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "error", "has no segments"),
        )
    )
    small = seg_of(downsampled(base), "frame_size_mismatch")
    w.add(
        Case(
            "frame_size_mismatch",
            "SEG with 128 x 128 frames that names the 256 x 256 base sources",
            objects=[w.save("frame_size_mismatch", "seg.dcm", small, ok)],
            expect_seg=_seg_expect(small, "error", "frames are 128x128 but source"),
        )
    )
    second = with_sources_renamed(other, "two_studies")
    mixed = seg_of(base, "two_studies")
    _point_frame_at(mixed, 0, second.sources[0])
    w.add(
        Case(
            "two_studies",
            "SEG whose frames reference sources from two different studies",
            objects=[*_sources(w, "two_studies", second), w.save("two_studies", "seg.dcm", mixed, ok)],
            expect_seg=_seg_expect(mixed, "error", "span 2 studies"),
        )
    )
    seg = renamed(good, "seg_study_differs", "seg")
    seg.StudyInstanceUID = uid("seg_study_differs", "study")
    w.add(
        Case(
            "seg_study_differs",
            "SEG whose Study Instance UID is not the study of the sources it segments",
            objects=[w.save("seg_study_differs", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "error", "differs from its sources' study"),
        )
    )
    seg = renamed(good, "reference_path_uid", "seg")
    _point_frame_at(seg, 0, None, uid_value="1.2.3/../../../etc/passwd")
    w.add(
        Case(
            "reference_path_uid",
            "SEG whose first frame references a source UID with path characters",
            objects=[w.save("reference_path_uid", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "error", "invalid source UID"),
        )
    )
    seg = renamed(good, "no_references", "seg")
    del seg.ReferencedSeriesSequence
    for group in seg.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    w.add(
        Case(
            "no_references",
            "SEG that names no source instance at all",
            objects=[w.save("no_references", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "error", "references no source instances"),
        )
    )
    corrupt = compressed(base, "corrupt_jpeg2000_source", JPEG2000Lossless)
    assert corrupt is not None
    frame = bytearray(next(generate_frames(corrupt.sources[0].PixelData, number_of_frames=1)))
    frame[4:40] = bytes(36)  # the SIZ marker segment: the decoder cannot read the header
    corrupt.sources[0].PixelData = encapsulate([bytes(frame)])
    seg = seg_of(corrupt, "corrupt_jpeg2000_source")
    w.add(
        Case(
            "corrupt_jpeg2000_source",
            "JPEG 2000 source whose codestream header is destroyed: parses, so it is stored; fails to "
            "decode at verification, recorded on the SEG",
            objects=[
                *_sources(w, "corrupt_jpeg2000_source", corrupt),
                w.save("corrupt_jpeg2000_source", "seg.dcm", seg, ok),
            ],
            expect_seg=_seg_expect(seg, "error", "pixel data cannot be decoded"),
        )
    )

    # -- accepted and verified ---------------------------------------------------------------------
    for case, syntax in (
        ("rle_sources", RLELossless),
        ("jpegls_sources", JPEGLSLossless),
        ("jpeg2000_sources", JPEG2000Lossless),
        ("jpeg_lossless_sources", JPEGLosslessSV1),
    ):
        series = compressed(base, case, syntax)
        if series is None:
            print(f"skipping {case}: {DCMCJPEG} not installed", file=sys.stderr)
            continue
        seg = seg_of(series, case)
        w.add(
            Case(
                case,
                f"sources in {syntax.name}: stored as received, decoded at verification",
                objects=[*_sources(w, case, series), w.save(case, "seg.dcm", seg, ok)],
                expect_seg=_seg_expect(seg, "verified"),
            )
        )
    series = with_sources_renamed(base, "rle_seg")
    seg = seg_of(series, "rle_seg", fractional=True)
    seg.compress(RLELossless)
    w.add(
        Case(
            "rle_seg",
            "a FRACTIONAL SEG, itself RLE Lossless compressed",
            objects=[*_sources(w, "rle_seg", series), w.save("rle_seg", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "verified"),
        )
    )
    series = with_sources_renamed(base, "labelmap_seg")
    seg = labelmap_seg(series, "labelmap_seg")
    w.add(
        Case(
            "labelmap_seg",
            "Label Map Segmentation Storage (one frame per source, pixel = segment number)",
            objects=[*_sources(w, "labelmap_seg", series), w.save("labelmap_seg", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "verified"),
        )
    )
    series = with_sources_renamed(base, "fractional_seg")
    seg = seg_of(series, "fractional_seg", fractional=True)
    w.add(
        Case(
            "fractional_seg",
            "FRACTIONAL / PROBABILITY SEG (255 levels), thresholded at 0.5",
            objects=[*_sources(w, "fractional_seg", series), w.save("fractional_seg", "seg.dcm", seg, ok)],
            expect_seg=_seg_expect(seg, "verified"),
        )
    )

    # -- offline: files that cannot travel over the network as they are -----------------------------
    images_dir = (root / "cases" / "base").relative_to(root).as_posix()
    data = to_bytes(good)
    for case, content, why in (
        ("bad_preamble", data[:128] + b"DICX" + data[132:], "SEG file whose 'DICM' prefix is wrong"),
        ("not_dicom", b"\x89PNG\r\n\x1a\n" + bytes(512), "a PNG header where a SEG file should be"),
        ("truncated_file_meta", data[:150], "SEG file cut inside its file meta information"),
        ("empty_file", b"", "an empty file"),
    ):
        path = w.path(case, "seg.dcm")
        path.write_bytes(content)
        w.add(
            Case(
                case,
                why + ": `gate verify` exits 2 with a one-line reason",
                kind="offline",
                extra={
                    "seg_file": path.relative_to(root).as_posix(),
                    "images_dir": images_dir,
                    "expect_exit": 2,
                    "expect_stderr": "invalid input:",
                },
            )
        )

    w.add(
        Case(
            "offline_corrupt_source",
            "`gate verify` of a SEG whose JPEG 2000 source cannot be decoded: exit 2, the reason names "
            "the source (before any model is loaded)",
            kind="offline",
            extra={
                "seg_file": "cases/corrupt_jpeg2000_source/seg.dcm",
                "images_dir": "cases/corrupt_jpeg2000_source",
                "expect_exit": 2,
                "expect_stderr": "pixel data cannot be decoded",
            },
        )
    )

    # -- association: AE titles ---------------------------------------------------------------------
    for case, raw, why in (
        ("calling_ae_non_ascii", "AISEG-é".encode() + b" " * 8, "calling AE title with UTF-8 bytes"),
        ("calling_ae_control_chars", b"AI\x00\x1bSEG" + b" " * 9, "calling AE title with NUL and ESC"),
        ("calling_ae_blank", b" " * 16, "calling AE title of spaces only (PS3.8 9.3.2: must not be)"),
    ):
        w.add(
            Case(
                case,
                why + ": the association is not established, the server keeps serving",
                kind="associate",
                extra={"calling_ae_hex": raw[:16].hex(), "expect": "rejected"},
            )
        )
    w.add(
        Case(
            "calling_ae_oversized",
            "a 17-character calling AE title cannot exist on the wire (PS3.8 9.3.2: a 16-byte field); "
            "pynetdicom refuses it at the sender; sent as its first 16 bytes it is an ordinary title",
            kind="associate",
            extra={"calling_ae_hex": b"AISEGMENTATION01".hex(), "expect": "accepted"},
        )
    )
    return w.write_manifest()


def _point_frame_at(
    seg: Dataset, index: int, source: Dataset | None, *, uid_value: str | None = None
) -> None:
    """Make frame ``index`` of ``seg`` reference ``source`` (or the bare UID ``uid_value``) instead."""
    item = seg.PerFrameFunctionalGroupsSequence[index].DerivationImageSequence[0].SourceImageSequence[0]
    if source is not None:
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ref = Dataset()
        ref.SeriesInstanceUID = source.SeriesInstanceUID
        inst = Dataset()
        inst.ReferencedSOPClassUID = source.SOPClassUID
        inst.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ref.ReferencedInstanceSequence = [inst]
        seg.ReferencedSeriesSequence.append(ref)
    else:
        item.ReferencedSOPInstanceUID = uid_value


def load_manifest(root: Path) -> dict[str, Any]:
    return json.loads((Path(root) / MANIFEST).read_text())


def corpus_files(root: Path) -> Sequence[Path]:
    """Every file of the corpus (seed inputs for the fuzz target)."""
    return sorted(p for p in (Path(root) / "cases").rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m gate.synth.hostile OUTDIR", file=sys.stderr)
        return 2
    manifest = build(Path(args[0]))
    cases = load_manifest(manifest.parent)["cases"]
    print(f"wrote {len(cases)} cases to {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
