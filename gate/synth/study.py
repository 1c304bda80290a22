"""Write a synthetic MR study with a good and a bad AI segmentation, for the demo and the tests.

The background is a real slice: ``MR-SIEMENS-DICOM-WithOverlays.dcm`` from pydicom's test files, an
axial, contrast-enhanced, fat-saturated T1 VIBE of the upper abdomen (1.5 T Siemens Avanto, 484 x 484,
0.72 mm pixels, acquired on a 256 matrix). It is the only MR test file with real body anatomy (liver,
kidneys, spleen, bowel) at a realistic matrix size: ``MR_small`` is 64 x 64 and ``MR2_*`` is a
shoulder. We resample it to 256 x 256 (its acquisition matrix) and paint into it a bright "Lesion" in
the liver and a dark "Cyst" in the spleen whose cross-sections follow an ellipsoid from slice to slice,
so every mask is known exactly. The slice's own liver lesion stays unsegmented, as real findings
outside a model's scope do. Only pixel data and acquisition parameters are taken from the file; the
patient, study and series are synthetic.

The bad SEG moves the "Lesion" segment by about half its diameter and dilates it: a gross error the
gate must catch (true Dice < 0.5, recorded in :class:`StudyFiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import dcmread
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from gate.synth.phantom import blob_mask, paint_structure, soft_mask
from gate.synth.seg import make_seg

BACKGROUND_FILE = "MR-SIEMENS-DICOM-WithOverlays.dcm"
MATRIX = 256
SLICE_THICKNESS_MM = 4.0
_SOURCE_SPACING_MM = 0.72314049586777
_SOURCE_ROWS = 484
PIXEL_SPACING_MM = round(_SOURCE_SPACING_MM * _SOURCE_ROWS / MATRIX, 6)
_ORIGIN_MM = (-159.8257, -175.3220, 28.4262)  # the source slice's position; z steps from here
_STORED_MAX = 4000  # 12 bits stored, as the source; headroom below 4095
_STUDY_TIME = datetime(2024, 1, 15, 10, 15, 0)
_EDGE_SIGMA = 0.8
_BAD_SHIFT_FRACTION = 0.45  # of the segment's largest diameter
_BAD_DILATION_PX = 2


@dataclass(frozen=True)
class Structure:
    """One painted structure: an ellipsoid-like blob spanning part of the series."""

    label: str
    contrast: float
    centre: tuple[float, float]  # (row, col) on the widest slice
    radii: tuple[float, float]  # (row, col) semi-axes on the widest slice, pixels
    centre_fraction: float  # widest slice, as a fraction of the series
    half_extent_fraction: float  # half its extent along z, as a fraction of the series


STRUCTURES = (
    Structure("Lesion", contrast=0.25, centre=(126.0, 45.0), radii=(9.0, 7.5), centre_fraction=0.45,
              half_extent_fraction=0.42),
    Structure("Cyst", contrast=-0.35, centre=(152.0, 203.0), radii=(8.0, 6.0), centre_fraction=0.6,
              half_extent_fraction=0.34),
)  # fmt: skip
BAD_SEGMENT_LABEL = "Lesion"


@dataclass(frozen=True)
class Phantom:
    """Pixel data and exact masks of a synthetic series, before it becomes DICOM."""

    images: np.ndarray  # float32 [n_slices, rows, cols] in [0, 1]
    masks: dict[str, np.ndarray]  # label -> bool [n_slices, rows, cols]


@dataclass(frozen=True)
class StudyFiles:
    """Where :func:`write_synthetic_study` put things, and what the tests need to know about them."""

    image_paths: list[Path]
    good_seg_path: Path
    bad_seg_path: Path
    study_instance_uid: str
    series_instance_uid: str
    source_sop_instance_uids: list[str]
    segment_labels: list[str]
    bad_segment_label: str
    bad_dice: float


def _background_path() -> str:
    """Path of the background file; pydicom-data's test files ship with pydicom, so it is local."""
    path = get_testdata_file(BACKGROUND_FILE)
    if not isinstance(path, str):
        raise FileNotFoundError(f"pydicom test file {BACKGROUND_FILE} not found")
    return path


@cache
def load_background() -> np.ndarray:
    """Return the real MR slice resampled to MATRIX x MATRIX, float32 in [0, 0.85].

    Scaled by its 99.9th percentile so the bright kidneys do not saturate, with headroom for bright
    painted structures. Cached: it is read once per process; callers must not modify it.
    """
    pixels = dcmread(_background_path()).pixel_array.astype(np.float32)
    resampled = ndimage.zoom(pixels, MATRIX / pixels.shape[0], order=1)
    scaled = (np.clip(resampled / np.percentile(resampled, 99.9), 0.0, 1.0) * 0.85).astype(np.float32)
    scaled.flags.writeable = False
    return scaled


def make_phantom(seed: int = 0, n_slices: int = 12) -> Phantom:
    """Return the painted series and its exact masks; the same seed always gives the same arrays.

    Each structure's outline (harmonics, angle) is drawn once per seed and scaled on every slice by
    the ellipsoid profile sqrt(1 - t^2), so neighbouring slices look like one 3D object; its centre
    drifts slightly along z. Slices where a structure is thinner than ~3 pixels leave it out.
    """
    if n_slices < 3:
        raise ValueError(f"n_slices must be at least 3, got {n_slices}")
    rng = np.random.default_rng([seed, 0])
    background = load_background()
    masks = {s.label: np.zeros((n_slices, MATRIX, MATRIX), dtype=bool) for s in STRUCTURES}
    for index, structure in enumerate(STRUCTURES):
        shape_seed = [seed, index + 1]
        jitter = np.random.default_rng(shape_seed).uniform(-1.0, 1.0, size=5)
        angle = float(jitter[0] * np.pi)
        radii = (structure.radii[0] * (1 + 0.12 * jitter[1]), structure.radii[1] * (1 + 0.12 * jitter[2]))
        centre_slice = structure.centre_fraction * (n_slices - 1)
        half_extent = structure.half_extent_fraction * n_slices
        for k in range(n_slices):
            t = (k - centre_slice) / half_extent
            scale = np.sqrt(max(0.0, 1.0 - t * t))
            if scale * min(radii) < 1.5:
                continue
            centre = (
                structure.centre[0] + 2.0 * jitter[3] + 0.4 * (k - centre_slice),
                structure.centre[1] + 2.0 * jitter[4],
            )
            masks[structure.label][k] = blob_mask(
                (MATRIX, MATRIX),
                centre,
                (radii[0] * scale, radii[1] * scale),
                np.random.default_rng(shape_seed),
                angle=angle,
            )
    images = np.empty((n_slices, MATRIX, MATRIX), dtype=np.float32)
    for k in range(n_slices):
        image = np.clip(background + rng.normal(0.0, 0.01, background.shape), 0.0, 1.0)
        for structure in STRUCTURES:
            if masks[structure.label][k].any():
                image = paint_structure(
                    image, masks[structure.label][k], rng, contrast=structure.contrast, edge_sigma=_EDGE_SIGMA
                )
        images[k] = image
    return Phantom(images=images, masks=masks)


def corrupt_mask(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return ``mask`` [slices, rows, cols] moved in-plane by ~45% of its diameter and dilated.

    This is the gross failure a quality gate exists for (a segment on the wrong spot, too big); the
    direction depends on the seed.
    """
    occupied = np.argwhere(mask)
    if occupied.size == 0:
        raise ValueError("cannot corrupt an empty mask")
    diameter = float(np.max(occupied[:, 1:].max(axis=0) - occupied[:, 1:].min(axis=0))) + 1.0
    direction = np.random.default_rng([seed, 99]).uniform(0.0, 2.0 * np.pi)
    shift = np.rint(_BAD_SHIFT_FRACTION * diameter * np.array([np.sin(direction), np.cos(direction)]))
    moved = ndimage.shift(mask.astype(np.uint8), (0.0, shift[0], shift[1]), order=0) > 0
    in_plane = np.zeros((1, 3, 3), dtype=bool)
    in_plane[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(moved, structure=in_plane, iterations=_BAD_DILATION_PX)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _uid(seed: int, *parts: str) -> str:
    """A UID derived from the seed, so the same seed writes the same study (and tests reproduce)."""
    return str(generate_uid(entropy_srcs=["seg-quality-gate synthetic study", str(seed), *parts]))


def make_source_datasets(phantom: Phantom, seed: int = 0) -> list[Dataset]:
    """Return one MR Image Storage dataset per slice, with the modules a PACS expects (PS3.3 A.4).

    Patient, study, series, frame of reference, equipment, image plane and pixel modules are filled;
    acquisition parameters are those of the background slice, so the series reads like a real one.
    """
    source = dcmread(_background_path(), stop_before_pixels=True)
    study_uid, series_uid = _uid(seed, "study"), _uid(seed, "series")
    frame_of_reference_uid = _uid(seed, "frame-of-reference")
    stored = np.rint(np.clip(phantom.images, 0.0, 1.0) * _STORED_MAX).astype(np.uint16)
    datasets = []
    for k in range(stored.shape[0]):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = _uid(seed, "image", str(k))
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        # patient and study
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = f"SYNTH-{seed:04d}"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _STUDY_TIME.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _STUDY_TIME.strftime("%H%M%S")
        ds.ReferringPhysicianName = ""
        ds.StudyID = f"{seed:04d}"
        ds.AccessionNumber = f"SYN{seed:06d}"
        ds.StudyDescription = "Synthetic abdomen MR"
        # series, equipment, frame of reference
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "t1_vibe_fs_tra synthetic"
        ds.BodyPartExamined = "ABDOMEN"
        ds.PatientPosition = "HFS"
        ds.Manufacturer = "seg-quality-gate synthetic"
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        for keyword in (
            "ScanningSequence",
            "SequenceVariant",
            "ScanOptions",
            "MRAcquisitionType",
            "SequenceName",
            "RepetitionTime",
            "EchoTime",
            "EchoTrainLength",
            "FlipAngle",
            "MagneticFieldStrength",
            "ImagedNucleus",
            "ProtocolName",
        ):
            if keyword in source:
                setattr(ds, keyword, source[keyword].value)
        # image plane: axial, z stepping by the slice thickness
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        z = _ORIGIN_MM[2] + k * SLICE_THICKNESS_MM
        ds.ImagePositionPatient = [_ORIGIN_MM[0], _ORIGIN_MM[1], z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        ds.SliceThickness = SLICE_THICKNESS_MM
        ds.SpacingBetweenSlices = SLICE_THICKNESS_MM
        ds.SliceLocation = z
        # image pixel
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = 1600
        ds.WindowWidth = 3200
        ds.PixelData = stored[k].tobytes()

        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        datasets.append(ds)
    return datasets


def _seg_masks(masks: dict[str, np.ndarray], fractional: bool) -> dict[str, np.ndarray]:
    """Masks as an engine would send them: exact, or (fractional) the painted soft edge per slice."""
    if not fractional:
        return masks
    return {label: np.stack([soft_mask(plane, _EDGE_SIGMA) for plane in m]) for label, m in masks.items()}


def write_synthetic_study(
    out_dir: Path, *, seed: int = 0, n_slices: int = 12, fractional: bool = False
) -> StudyFiles:
    """Write the series under ``out_dir/images/`` (one file per SOP Instance UID) and two SEGs.

    ``seg_good.dcm`` holds the exact masks; ``seg_bad.dcm`` the same with :data:`BAD_SEGMENT_LABEL`
    corrupted by :func:`corrupt_mask`. Pixels and UIDs are a function of the arguments, so a rerun
    overwrites the same files (images byte-identical; SEGs up to highdicom's own fresh Dimension
    Organization UID and timestamps); the two variants of ``fractional`` share the images but not the
    SEG UIDs.
    """
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(seed, n_slices)
    sources = make_source_datasets(phantom, seed)
    image_paths = []
    for ds in sources:
        path = image_dir / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        image_paths.append(path)

    truth = phantom.masks[BAD_SEGMENT_LABEL]
    wrong = corrupt_mask(truth, seed)
    bad_masks = {**phantom.masks, BAD_SEGMENT_LABEL: wrong}
    variant = "fractional" if fractional else "binary"
    paths = {"good": out_dir / "seg_good.dcm", "bad": out_dir / "seg_bad.dcm"}
    for name, masks in (("good", phantom.masks), ("bad", bad_masks)):
        seg = make_seg(
            sources,
            _seg_masks(masks, fractional),
            fractional=fractional,
            series_number=100 if name == "good" else 101,
            series_description=f"AI segmentation ({name})",
            sop_instance_uid=_uid(seed, "seg", name, variant),
            series_instance_uid=_uid(seed, "seg-series", name, variant),
            content_datetime=_STUDY_TIME,
        )
        seg.save_as(paths[name], enforce_file_format=True)
    return StudyFiles(
        image_paths=image_paths,
        good_seg_path=paths["good"],
        bad_seg_path=paths["bad"],
        study_instance_uid=str(sources[0].StudyInstanceUID),
        series_instance_uid=str(sources[0].SeriesInstanceUID),
        source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in sources],
        segment_labels=[s.label for s in STRUCTURES],
        bad_segment_label=BAD_SEGMENT_LABEL,
        bad_dice=dice(wrong, truth),
    )


def write_demo(out_dir: Path) -> StudyFiles:
    """Write the demo study (seed 0, 12 slices, BINARY SEGs) under ``out_dir``."""
    return write_synthetic_study(out_dir, seed=0, n_slices=12, fractional=False)
