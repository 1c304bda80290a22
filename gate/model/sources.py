"""Labelled volumes for evaluating a verifier: readers for common formats and the offline real sources.

A :class:`Volume` is one subject's (or one file's) stack of frames in modality units with boolean masks
per structure and the in-plane pixel spacing; it is the unit of the train/val/test split, so that no
slice of a volume scored at test time was seen, even as a neighbour, in training or calibration.

Readers: DICOM series + SEG folders (decoded with the gate's own :mod:`gate.assemble` code), NIfTI
(nibabel), MetaImage ``.mha``/``.mhd`` (uncompressed; a small header parser) and NRRD (``pynrrd`` when
installed). Offline real sources, all installable without network access:

* ``icbm152`` — nilearn's ICBM152 2009 template with its grey/white-matter maps (one subject; its
  axial, coronal and sagittal stacks are separate "volumes", and the shipped REC-Net trained on the
  axial and coronal ones, so those are always in the train split);
* ``itk`` — Debian ``insighttoolkit5-examples`` data: a T1 head (``KmeansTest_T1``, 2 mm) with its skull
  strip and k-means tissue classes, and the BrainWeb proton-density/T1 slices with ITK's ventricle model;
* ``pydicom-synth`` — real CT/MR frames of ``pydicom-data`` with synthetic structures painted in
  (:mod:`gate.synth.phantom`, exact masks);
* ``threshold`` — iso-intensity (3-class Otsu) masks of real images: pydicom-data frames and the ITK
  example slices (head, rat lung, fat MRI, mid-sagittal brain).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from gate.model.data import clean_mask

log = logging.getLogger("gate.model")

ITK_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
SPLITS = ("train", "val", "test")

# pydicom-data files seen by the shipped REC-Net in training (gate.model.data.PYDICOM_TRAIN): train only.
PYDICOM_SEEN = (
    "emri_small.dcm",
    "693_UNCR.dcm",
    "explicit_VR-UN.dcm",
    "bad_sequence.dcm",
    "CT_small.dcm",
    "MR2_UNCR.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
)
# Synthetic lesions painted per pydicom-data frame (each into its own copy of the frame).
LESIONS_PER_FRAME = 3
PYDICOM_UNSEEN = ("MR_small.dcm", "J2K_pixelrep_mismatch.dcm", "liver_1frame.dcm")
ITK_THRESHOLD_SLICES = (
    "BrainMidSagittalSlice.png",
    "VisibleWomanHeadSlice.png",
    "FatMRISlice.png",
    "RatLungSlice2.mha",
)

# Explicit split of the offline volumes: everything the shipped model trained on is train; the held-out
# volumes are divided so that val (threshold choice, per-label statistics) and test share no subject.
FIXED_SPLIT: dict[str, str] = {
    "icbm152/axial": "train",
    "icbm152/coronal": "train",
    "icbm152/sagittal": "val",
    **{f"pydicom/{n}": "train" for n in PYDICOM_SEEN},
    "pydicom/MR_small.dcm": "val",
    "pydicom/J2K_pixelrep_mismatch.dcm": "test",
    "pydicom/liver_1frame.dcm": "test",
    "itk/KmeansTest_T1": "test",
    "itk/BrainWeb-slice": "test",
    "itk/BrainMidSagittalSlice.png": "val",
    "itk/VisibleWomanHeadSlice.png": "test",
    "itk/FatMRISlice.png": "test",
    "itk/RatLungSlice2.mha": "test",
}


@dataclass(frozen=True)
class Volume:
    """A stack of frames with exact masks; ``volume`` is the id the split is made on."""

    source: str
    volume: str
    image: np.ndarray  # float32 [Z, H, W], modality units
    labels: Mapping[str, np.ndarray] = field(default_factory=dict)  # structure -> bool [Z, H, W]
    spacing: tuple[float, float] = (1.0, 1.0)  # in-plane (row, col) mm


def split_of(volume: str, fractions: tuple[float, float] = (0.6, 0.2)) -> str:
    """The split of a volume id: fixed for the offline sources, else a stable hash (60/20/20 by default)."""
    if volume in FIXED_SPLIT:
        return FIXED_SPLIT[volume]
    u = int.from_bytes(hashlib.sha256(volume.encode()).digest()[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


# --- readers -------------------------------------------------------------------------------------

_MET_TYPES = {
    "MET_UCHAR": np.uint8,
    "MET_CHAR": np.int8,
    "MET_USHORT": np.uint16,
    "MET_SHORT": np.int16,
    "MET_UINT": np.uint32,
    "MET_INT": np.int32,
    "MET_FLOAT": np.float32,
    "MET_DOUBLE": np.float64,
}


def read_metaimage(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """An uncompressed MetaImage (``.mha`` with LOCAL data or ``.mhd`` + raw file): (array, spacing).

    The array is returned in numpy order (z, y, x) with spacing in the same order.
    """
    path = Path(path)
    raw = path.read_bytes()
    header: dict[str, str] = {}
    offset = 0
    for line in raw.split(b"\n"):
        offset += len(line) + 1
        key, _, value = line.decode("latin-1").partition("=")
        header[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if header.get("CompressedData", "False").lower() == "true":
        raise ValueError(f"{path}: compressed MetaImage data is not supported")
    dims = [int(v) for v in header["DimSize"].split()]
    dtype = np.dtype(_MET_TYPES[header["ElementType"]])
    msb = (header.get("ElementByteOrderMSB") or header.get("BinaryDataByteOrderMSB", "False")).lower()
    dtype = dtype.newbyteorder(">" if msb == "true" else "<")
    spacing = [float(v) for v in header.get("ElementSpacing", " ".join(["1"] * len(dims))).split()]
    data_file = header["ElementDataFile"]
    n = int(np.prod(dims))
    if data_file == "LOCAL":
        buf = raw[offset : offset + n * dtype.itemsize]
    else:
        buf = (path.parent / data_file).read_bytes()[: n * dtype.itemsize]
    arr = np.frombuffer(buf, dtype=dtype, count=n).reshape(dims[::-1])
    return arr.astype(np.float32), tuple(spacing[::-1])


def read_volume_file(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """NIfTI, MetaImage, NRRD or a 2-D PNG as a float32 [Z, H, W] stack and its (z, row, col) spacing.

    NIfTI and NRRD arrays are (x, y, z): frames are the last axis, as radiological slices are stored.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(str(path))
        arr = np.asarray(img.get_fdata(), dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if arr.ndim == 2:
            arr = arr[:, :, None]
            zooms = (*zooms[:2], 1.0)
        return np.moveaxis(arr, 2, 0), (zooms[2], zooms[0], zooms[1])
    if name.endswith((".nrrd", ".nhdr")):
        import nrrd  # pynrrd, optional

        arr, header = nrrd.read(str(path))
        arr = np.asarray(arr, dtype=np.float32)
        directions = header.get("space directions")
        spacing = (
            [float(np.linalg.norm(d)) for d in directions] if directions is not None else [1.0] * arr.ndim
        )
        if arr.ndim == 2:
            return arr[None], (1.0, spacing[0], spacing[1])
        return np.moveaxis(arr, 2, 0), (spacing[2], spacing[0], spacing[1])
    if name.endswith((".mha", ".mhd")):
        arr, spacing = read_metaimage(path)
        if arr.ndim == 2:
            return arr[None], (1.0, *spacing)
        return arr, spacing
    if name.endswith(".png"):
        from PIL import Image

        return np.asarray(Image.open(path).convert("L"), dtype=np.float32)[None], (1.0, 1.0, 1.0)
    raise ValueError(f"{path}: unknown image format (NIfTI, NRRD, MetaImage or PNG expected)")


def load_image_label_pair(
    image_path: Path,
    label_path: Path,
    names: Mapping[int, str] | None = None,
    *,
    source: str = "files",
    volume: str | None = None,
) -> Volume:
    """An image and its label map (NIfTI/NRRD/MetaImage): one boolean mask per label value > 0."""
    image, spacing = read_volume_file(image_path)
    label, _ = read_volume_file(label_path)
    if label.shape != image.shape:
        raise ValueError(f"label {label_path} shape {label.shape} differs from image {image.shape}")
    values = [int(v) for v in np.unique(label) if v > 0]
    labels = {(names or {}).get(v, f"label{v}"): label == v for v in values}
    return Volume(source, volume or Path(image_path).name, image, labels, (spacing[1], spacing[2]))


def load_dicom_seg_folder(folder: Path, *, source: str = "dicom") -> list[Volume]:
    """Every SEG in ``folder`` (recursively) with its source instances from the same folder.

    Decoding is the gate's own (:func:`gate.assemble.loader.load_verification_input`), so a site's
    labelled set is read exactly as the gate reads SEGs; frames are ordered by Instance Number.
    """
    import pydicom

    from gate.assemble.loader import load_verification_input

    datasets = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            try:
                datasets.append(pydicom.dcmread(path))
            except (pydicom.errors.InvalidDicomError, OSError) as exc:
                log.debug("skipping %s: %s", path, exc)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets if "SOPInstanceUID" in ds}
    volumes: list[Volume] = []
    for seg in (ds for ds in datasets if ds.get("Modality") == "SEG"):
        sources = {uid: ds for uid, ds in by_uid.items() if ds.get("Modality") != "SEG"}
        inp = load_verification_input(seg, sources)
        uids = sorted(inp.images, key=lambda u: int(by_uid[u].get("InstanceNumber", 0) or 0))
        image = np.stack([inp.images[u] for u in uids])
        labels = {
            s.label: np.stack(
                [np.asarray(s.masks.get(u, np.zeros(image.shape[1:], bool)), bool) for u in uids]
            )
            for s in inp.segments
        }
        spacing = by_uid[uids[0]].get("PixelSpacing", [1.0, 1.0])
        volumes.append(
            Volume(source, str(seg.SOPInstanceUID), image, labels, (float(spacing[0]), float(spacing[1])))
        )
    return volumes


# --- offline real sources ------------------------------------------------------------------------


@functools.cache
def icbm152_volumes() -> tuple[Volume, ...]:
    """ICBM152 2009 (1 mm): axial, coronal and sagittal stacks with brain, white matter and outline."""
    from gate.model.data import _icbm_volumes

    t1, gm, wm = _icbm_volumes()
    out = []
    for axis, name in ((2, "axial"), (1, "coronal"), (0, "sagittal")):
        n = t1.shape[axis]
        idx = np.arange(int(0.2 * n), int(0.8 * n), 4)
        image = np.moveaxis(np.take(t1, idx, axis=axis), axis, 0)
        g = np.moveaxis(np.take(gm, idx, axis=axis), axis, 0)
        w = np.moveaxis(np.take(wm, idx, axis=axis), axis, 0)
        labels = {"brain": (g + w) > 0.5, "white matter": w > 0.5}
        out.append(Volume("icbm152", f"icbm152/{name}", image.astype(np.float32), labels, (1.0, 1.0)))
    return tuple(out)


@functools.cache
def itk_volumes() -> tuple[Volume, ...]:
    """ITK example heads with masks made by others (not by us): other subjects than ICBM152."""
    import nibabel as nib
    from PIL import Image

    t1 = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz").get_fdata(), np.float32)
    strip = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1RawSkullStrip.nii.gz").get_fdata())
    # ITK's k-means tissue classes inside the brain: 4 CSF, 5 grey matter, 6 white matter (the brightest).
    kmeans = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz").get_fdata())
    inside = [int(v) for v in np.unique(kmeans[strip > 0]) if v > 0]
    brightest = max(inside, key=lambda v: float(t1[kmeans == v].mean()))
    zs = np.arange(16, 50, 2)
    image = np.moveaxis(t1[:, :, zs], 2, 0)
    labels = {
        "brain": np.moveaxis(strip[:, :, zs] > 0, 2, 0),
        "white matter": np.moveaxis((kmeans[:, :, zs] == brightest) & (strip[:, :, zs] > 0), 2, 0),
    }
    head = Volume("itk", "itk/KmeansTest_T1", image, labels, (2.0, 2.0))
    ventricle = np.asarray(Image.open(ITK_DATA / "VentricleModel.png")) > 127
    slices = [
        np.asarray(Image.open(ITK_DATA / n).convert("L"), np.float32)
        for n in ("BrainProtonDensitySlice.png", "BrainT1Slice.png")
    ]
    brainweb = Volume(
        "itk", "itk/BrainWeb-slice", np.stack(slices), {"ventricles": np.stack([ventricle] * 2)}, (1.0, 1.0)
    )
    return head, brainweb


def threshold_labels(image: np.ndarray) -> dict[str, np.ndarray]:
    """3-class Otsu iso-intensity masks of each frame ("iso-intensity low/high"): boundaries on real edges."""
    from skimage.filters import threshold_multiotsu

    from gate.verify.normalize import normalize_robust

    low = np.zeros(image.shape, bool)
    high = np.zeros(image.shape, bool)
    for z, frame in enumerate(image):
        smooth = ndimage.gaussian_filter(normalize_robust(frame), 1.0)
        levels = threshold_multiotsu(smooth, classes=3)
        low[z] = ndimage.binary_fill_holes(clean_mask(smooth > levels[0]))
        high[z] = clean_mask(smooth > levels[1])
    return {"iso-intensity low": low, "iso-intensity high": high}


def _dicom_stack(name: str) -> tuple[np.ndarray, tuple[float, float]]:
    import pydicom

    from gate.model.data import dicom_path

    ds = pydicom.dcmread(dicom_path(name))
    pixels = ds.pixel_array.astype(np.float32)
    pixels = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    stack = pixels if pixels.ndim == 3 else pixels[None]
    spacing = ds.get("PixelSpacing", [1.0, 1.0])
    # Large frames are halved, as the shipped model's training did: keeps the cost per case bounded.
    if max(stack.shape[1:]) >= 400:
        stack = np.stack([ndimage.zoom(f, 0.5, order=1) for f in stack])
        spacing = [2 * float(spacing[0]), 2 * float(spacing[1])]
    return stack.astype(np.float32), (float(spacing[0]), float(spacing[1]))


def painted_volume(name: str, image: np.ndarray, spacing: tuple[float, float], seed: int) -> Volume:
    """Synthetic lesions painted into real frames: one "lesion" per frame, exact mask, varied look."""
    from gate.synth.phantom import blob_mask, paint_structure
    from gate.verify.normalize import normalize_robust

    rng = np.random.default_rng([seed, int.from_bytes(name.encode()[:8], "big") % 2**32])
    frames, masks = [], []
    for raw in image:
        norm = normalize_robust(raw)
        h, w = norm.shape
        body = ndimage.binary_erosion(norm > 0.1, iterations=5)
        candidates = np.argwhere(body) if body.sum() > 100 else np.argwhere(np.ones_like(body))
        for _ in range(LESIONS_PER_FRAME):  # each lesion in its own copy of the frame: one mask per case
            center = candidates[rng.integers(len(candidates))].astype(float)
            r = float(rng.uniform(0.05, 0.15) * min(h, w))
            radii = (r, r * rng.uniform(0.6, 1.0))
            irregularity = float(rng.uniform(0.05, 0.35))
            mask = blob_mask((h, w), (center[0], center[1]), radii, rng, irregularity=irregularity)
            inside = float(norm[mask].mean())
            magnitude = float(rng.uniform(0.1, 0.45))
            sign = 1.0 if inside + magnitude <= 1.0 and (inside < 0.5 or rng.random() < 0.5) else -1.0
            edge = float(rng.uniform(0.5, 1.5))
            texture = float(rng.uniform(0, 0.05))
            painted = paint_structure(
                norm, mask, rng, contrast=sign * magnitude, edge_sigma=edge, texture=texture
            )
            frames.append(painted)
            masks.append(mask)
    return Volume("pydicom-synth", f"pydicom/{name}", np.stack(frames), {"lesion": np.stack(masks)}, spacing)


@functools.cache
def pydicom_volumes(seed: int = 0) -> tuple[Volume, ...]:
    """pydicom-data frames: painted lesions (``pydicom-synth``) and Otsu masks (``threshold``)."""
    out = []
    for name in (*PYDICOM_SEEN, *PYDICOM_UNSEEN):
        try:
            stack, spacing = _dicom_stack(name)
        except (FileNotFoundError, ValueError, AttributeError) as exc:
            log.warning("pydicom-data %s unusable: %s", name, exc)
            continue
        if stack.shape[0] > 6:
            stack = stack[:: max(1, stack.shape[0] // 6)]
        out.append(painted_volume(name, stack, spacing, seed))
        out.append(Volume("threshold", f"pydicom/{name}", stack, threshold_labels(stack), spacing))
    return tuple(out)


@functools.cache
def itk_threshold_volumes() -> tuple[Volume, ...]:
    """Real ITK example slices (head, fat MRI, rat lung, mid-sagittal brain) with Otsu masks."""
    out = []
    for name in ITK_THRESHOLD_SLICES:
        image, spacing = read_volume_file(ITK_DATA / name)
        out.append(
            Volume("threshold", f"itk/{name}", image, threshold_labels(image), (spacing[1], spacing[2]))
        )
    return tuple(out)


SOURCES = ("icbm152", "itk", "pydicom-synth", "threshold")


def offline_volumes(sources: Sequence[str] | None = None, *, seed: int = 0) -> list[Volume]:
    """All offline volumes of the named sources (all when None), in a fixed order."""
    wanted = set(sources or SOURCES)
    unknown = wanted - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; known: {SOURCES}")
    volumes: list[Volume] = []
    if "icbm152" in wanted:
        volumes += icbm152_volumes()
    if "itk" in wanted:
        volumes += itk_volumes()
    if wanted & {"pydicom-synth", "threshold"}:
        volumes += [v for v in pydicom_volumes(seed) if v.source in wanted]
    if "threshold" in wanted:
        volumes += itk_threshold_volumes()
    return volumes


def volumes_for_split(split: str, sources: Sequence[str] | None = None, *, seed: int = 0) -> list[Volume]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [v for v in offline_volumes(sources, seed=seed) if split_of(v.volume) == split]
