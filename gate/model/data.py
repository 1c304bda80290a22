"""Training and validation frames for the REC-Net, and the tiles cut from them.

Every frame is a real image, normalised exactly as the gate normalises a source frame
(:func:`gate.verify.normalize.normalize_robust` on the whole frame), with a mask whose boundary is
true by construction:

* ICBM152 2009 template slices (nilearn, offline) with tissue masks: WM > 0.5, GM + WM > 0.5, head;
* real CT/MR slices of pydicom-data with iso-intensity masks (thresholds) and with synthetic
  structures painted in (:mod:`gate.synth.phantom`, exact masks): the template alone has strong,
  smooth edges everywhere, and a network that only saw those paints strong edges where real ones are
  faint;
* held out, never trained on: other pydicom-data files (a different head CT, the MR series), the
  ICBM sagittal direction (validation, to choose the threshold), and the ITK example head images of
  other subjects (the test set of ``tests/test_recnet_real_anatomy.py``).

Tiles are cut so that a random strip pixel lies anywhere in the tile (the gate's tile grid puts strip
pixels anywhere, tile edges included), with the frame mirrored beyond its edge as ``gate.verify.tiles``
does. Everything is seeded: the same seed gives the same frames and the same batches.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from gate.synth.phantom import blob_mask, paint_structure
from gate.verify.normalize import normalize_robust
from gate.verify.strip import boundary_strip
from gate.verify.tiles import PAD_MODE

log = logging.getLogger("gate.model")

ITK_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")

# pydicom-data files (real patient images) used for training and held out for validation.
PYDICOM_TRAIN = (
    "emri_small.dcm",  # head MR series (sagittal, 10 frames)
    "693_UNCR.dcm",  # head CT (CQ500)
    "explicit_VR-UN.dcm",  # abdominal CT (pancreas)
    "bad_sequence.dcm",  # neck CT
    "CT_small.dcm",  # spine CT, small
    "MR2_UNCR.dcm",  # shoulder MR
    "MR-SIEMENS-DICOM-WithOverlays.dcm",  # abdominal MR
)
PYDICOM_HELDOUT = (
    "J2K_pixelrep_mismatch.dcm",  # head CT of another patient
    "MR_small.dcm",  # MR
)

MIN_STRIP_PIXELS = 40


@dataclass(frozen=True)
class Frame:
    """A normalised frame [0, 1] with a correct mask; ``source`` says where it came from."""

    image: np.ndarray  # float32
    mask: np.ndarray  # bool
    source: str


@dataclass(frozen=True)
class DataConfig:
    tile_size: int = 64
    strip_width: int = 2
    seed: int = 0
    blobs_per_frame: int = 10
    icbm_step: int = 6
    icbm_axes: tuple[int, ...] = (1, 2)  # coronal, axial; sagittal (0) is held out for validation
    pydicom_files: tuple[str, ...] = PYDICOM_TRAIN
    skull: bool = True  # paint a synthetic skull around every other ICBM slice


def _resize(image: np.ndarray, factor: float, order: int = 1) -> np.ndarray:
    return image if factor == 1.0 else ndimage.zoom(image, factor, order=order)


def _resize_mask(mask: np.ndarray, factor: float) -> np.ndarray:
    return mask if factor == 1.0 else ndimage.zoom(mask.astype(np.float32), factor, order=1) > 0.5


def _usable(mask: np.ndarray, strip_width: int) -> bool:
    if not mask.any() or mask.all():
        return False
    return int(boundary_strip(mask, strip_width).sum()) >= MIN_STRIP_PIXELS


def clean_mask(mask: np.ndarray, min_size: int = 150) -> np.ndarray:
    """Open away speckle and drop small components, so a threshold mask follows real edges only."""
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes >= min_size
    return keep[labels]


# --- ICBM152 -------------------------------------------------------------------------------------


@functools.cache
def _icbm_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1).get_fdata().astype(np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata().astype(np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata().astype(np.float32)
    return t1, gm, wm


# Layers outside the brain of a T1 head, inner to outer: CSF, inner table, diploe, outer table, scalp.
# (thickness range in mm, T1 intensity range on the template's [0, 1] scale)
_T1_LAYERS = (
    ((0.5, 3.0), (0.05, 0.25)),
    ((1.0, 3.0), (0.0, 0.12)),
    ((0.5, 4.0), (0.35, 0.85)),
    ((0.5, 2.0), (0.0, 0.12)),
    ((2.0, 8.0), (0.45, 1.0)),
)


def add_skull(
    image: np.ndarray, brain: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paint CSF, skull and scalp layers around a skull-stripped T1 slice; returns (image, head mask).

    The ICBM152 template of nilearn is skull-stripped: a network trained on it alone has never seen the
    dark CSF/bone ring and bright scalp that lie next to a brain boundary in every real head MR. Layer
    thicknesses vary smoothly around the head; the brain's own boundary is untouched.
    """
    outside = ndimage.distance_transform_edt(~brain)
    wobble = ndimage.gaussian_filter(rng.normal(size=image.shape), 12.0)
    wobble /= float(np.abs(wobble).max()) or 1.0
    depth = outside * (1.0 + 0.3 * wobble)
    ring = np.zeros_like(image)
    edge = 0.0
    for (t_lo, t_hi), (v_lo, v_hi) in _T1_LAYERS:
        thickness = float(rng.uniform(t_lo, t_hi))
        ring = np.where((depth > edge) & (depth <= edge + thickness), float(rng.uniform(v_lo, v_hi)), ring)
        edge += thickness
    head = brain | (depth <= edge)
    texture = 1.0 + 0.05 * ndimage.gaussian_filter(rng.normal(size=image.shape), 1.0)
    ring = ndimage.gaussian_filter(ring, 0.7) * texture
    painted = np.where(brain, image, np.clip(ring, 0.0, 1.0)).astype(np.float32)
    return painted, head


def icbm_frames(
    axes: tuple[int, ...], cfg: DataConfig, scales: tuple[float, ...] = (1.0, 0.5)
) -> list[Frame]:
    """ICBM152 2009 template slices along ``axes`` (0 sagittal, 1 coronal, 2 axial) with tissue masks.

    Every other slice gets a synthetic skull (:func:`add_skull`), whose outer boundary is a mask too.
    """
    t1, gm, wm = _icbm_volumes()
    rng = np.random.default_rng([cfg.seed, 104729, *axes])
    frames: list[Frame] = []
    for axis in axes:
        n = t1.shape[axis]
        for k, index in enumerate(range(int(0.18 * n), int(0.82 * n), cfg.icbm_step)):
            take = functools.partial(np.take, indices=index, axis=axis)
            image, g, w = take(t1), take(gm), take(wm)
            outline = ndimage.binary_fill_holes(clean_mask(image > 0.08))
            masks = {"wm": w > 0.5, "brain": (g + w) > 0.5, "outline": outline}
            tag = ""
            if cfg.skull and k % 2 == 0:
                image, masks["head"] = add_skull(image, outline, rng)
                tag = "+skull"
            for scale in scales:
                img = normalize_robust(_resize(image, scale))
                for name, mask in masks.items():
                    m = _resize_mask(mask, scale)
                    if _usable(m, cfg.strip_width):
                        frames.append(Frame(img, m, f"icbm152{tag}/axis{axis}/{index}/{name}/x{scale}"))
    return frames


# --- pydicom-data --------------------------------------------------------------------------------


def dicom_path(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom-data file {name} is not installed")
    return Path(path)


def dicom_images(name: str) -> list[np.ndarray]:
    """The frames of a pydicom-data file in modality units (rescale applied), float32."""
    import pydicom

    ds = pydicom.dcmread(dicom_path(name))
    pixels = ds.pixel_array.astype(np.float32)
    pixels = pixels * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    return list(pixels) if pixels.ndim == 3 else [pixels]


def _scales_for(shape: tuple[int, ...]) -> tuple[float, ...]:
    """Keep frames between about 128 and 512 pixels wide: the gate sees both native and coarse grids."""
    side = max(shape)
    if side >= 1000:
        return (0.5, 0.25)
    if side >= 400:
        return (1.0, 0.5)
    return (1.0,)


def threshold_masks(image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Iso-intensity masks of a normalised frame: their boundary is an image edge by construction."""
    from skimage.filters import threshold_multiotsu

    smooth = ndimage.gaussian_filter(image, 1.0)
    levels = [float(t) for t in threshold_multiotsu(smooth, classes=3)]
    masks = []
    for i, level in enumerate(levels):
        mask = clean_mask(smooth > level)
        masks.append((f"otsu{i}", mask))
    return masks


def painted_frames(
    image: np.ndarray, source: str, count: int, rng: np.random.Generator, strip_width: int
) -> list[Frame]:
    """Synthetic structures painted into a real frame, one per frame, with their exact masks.

    Contrast (signed, faint to strong), edge softness, texture, size and shape vary, so that the
    network learns to follow the mask rather than a prior of strong template edges.
    """
    frames: list[Frame] = []
    h, w = image.shape
    body = ndimage.binary_erosion(image > 0.1, iterations=5)
    candidates = np.argwhere(body) if body.sum() > 100 else np.argwhere(np.ones_like(body))
    for k in range(count):
        center = candidates[rng.integers(len(candidates))].astype(float)
        r = float(rng.uniform(0.03, 0.18) * min(h, w))
        radii = (max(4.0, r * rng.uniform(0.6, 1.0)), max(4.0, r * rng.uniform(0.6, 1.0)))
        mask = blob_mask(
            (h, w), (center[0], center[1]), radii, rng, irregularity=float(rng.uniform(0.05, 0.4))
        )
        if not _usable(mask, strip_width):
            continue
        magnitude = float(rng.uniform(0.06, 0.45))
        inside_mean = float(image[mask].mean())
        # Brighten dark surroundings, darken bright ones, either where there is room.
        sign = 1.0 if inside_mean + magnitude <= 1.0 and (inside_mean < 0.5 or rng.random() < 0.5) else -1.0
        painted = paint_structure(
            image,
            mask,
            rng,
            contrast=sign * magnitude,
            edge_sigma=float(rng.uniform(0.4, 1.6)),
            texture=float(rng.uniform(0.0, 0.06)),
        )
        frames.append(Frame(normalize_robust(painted), mask, f"{source}/blob{k}"))
    return frames


def dicom_frames(names: tuple[str, ...], cfg: DataConfig, *, salt: int = 0) -> list[Frame]:
    """Threshold-mask and painted-structure frames from real pydicom-data CT/MR images."""
    rng = np.random.default_rng([cfg.seed, 7919, salt])
    frames: list[Frame] = []
    for name in names:
        for f, raw in enumerate(dicom_images(name)):
            for scale in _scales_for(raw.shape):
                image = normalize_robust(_resize(raw, scale))
                source = f"pydicom-data/{name}/frame{f}/x{scale}"
                for label, mask in threshold_masks(image):
                    if _usable(mask, cfg.strip_width):
                        frames.append(Frame(image, mask, f"{source}/{label}"))
                frames.extend(painted_frames(image, source, cfg.blobs_per_frame, rng, cfg.strip_width))
    return frames


def training_frames(cfg: DataConfig) -> list[Frame]:
    """ICBM152 axial + coronal slices and the training pydicom-data files."""
    frames = icbm_frames(cfg.icbm_axes, cfg) + dicom_frames(cfg.pydicom_files, cfg)
    log.info("training frames: %d", len(frames))
    return frames


def validation_frames(cfg: DataConfig) -> list[Frame]:
    """Held out from training: ICBM152 sagittal slices and the held-out pydicom-data files."""
    sag = icbm_frames((0,), dataclasses.replace(cfg, icbm_step=12), scales=(1.0,))
    return sag + dicom_frames(heldout_files(cfg), cfg, salt=1)


def heldout_files(cfg: DataConfig) -> tuple[str, ...]:
    """The held-out pydicom-data files this configuration did not train on."""
    return tuple(name for name in PYDICOM_HELDOUT if name not in cfg.pydicom_files)


def training_data_description(cfg: DataConfig) -> list[str]:
    axes = {0: "sagittal", 1: "coronal", 2: "axial"}
    return [
        "ICBM152 2009c nonlinear symmetric template (nilearn), "
        + " and ".join(axes[a] for a in cfg.icbm_axes)
        + " slices at 1 and 2 mm; masks WM>0.5, GM+WM>0.5, head",
        "pydicom-data real CT/MR frames " + ", ".join(cfg.pydicom_files) + " at native and half resolution; "
        "masks: 3-class Otsu iso-intensity masks and synthetic structures painted in "
        "(gate.synth.phantom, exact masks, contrast 0.06-0.45)",
        "augmentation: flips, 90-degree rotations, gamma 0.7-1.4",
    ]


# --- wrong masks (validation of the threshold) -----------------------------------------------------


def wrong_masks(mask: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Clearly and moderately wrong versions of a correct mask, as a bad segmentation engine makes them.

    Shifted by 10 px and by 5 px, dilated and eroded by 4 px, and a foreign structure of similar size
    elsewhere (the mask of something that is not there).
    """
    out: list[tuple[str, np.ndarray]] = []
    cross = ndimage.generate_binary_structure(2, 1)
    for dist in (10, 5):
        angle = rng.uniform(0, 2 * np.pi)
        dr, dc = round(dist * np.sin(angle)), round(dist * np.cos(angle))
        out.append((f"shift{dist}", np.roll(mask, (dr, dc), axis=(0, 1))))
    out.append(("dilate4", ndimage.binary_dilation(mask, cross, iterations=4)))
    out.append(("erode4", ndimage.binary_erosion(mask, cross, iterations=4)))
    h, w = mask.shape
    area = float(mask.sum())
    r = float(np.clip(np.sqrt(area / np.pi), 6, 0.25 * min(h, w)))
    center = (rng.uniform(r, h - r), rng.uniform(r, w - r))
    out.append(("foreign", blob_mask((h, w), center, (r, r * rng.uniform(0.6, 1.0)), rng, irregularity=0.2)))
    return [(name, m) for name, m in out if m.any() and not m.all()]


# --- tiles ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedFrame:
    """A frame mirrored by one tile on every side, with its strip, ready for fast tile cutting."""

    image: np.ndarray
    mask: np.ndarray
    strip: np.ndarray
    strip_pixels: np.ndarray  # [K, 2] in the padded frame
    source: str


def prepare(frame: Frame, cfg: DataConfig) -> PreparedFrame:
    t = cfg.tile_size
    strip = boundary_strip(frame.mask, cfg.strip_width)
    pad = ((t, t), (t, t))
    return PreparedFrame(
        np.pad(frame.image, pad, mode=PAD_MODE),
        np.pad(frame.mask, pad, mode=PAD_MODE),
        np.pad(strip, pad, mode=PAD_MODE),
        np.argwhere(strip) + t,
        frame.source,
    )


def sample_batch(
    frames: list[PreparedFrame],
    batch_size: int,
    rng: np.random.Generator,
    tile: int,
    *,
    weights: np.ndarray | None = None,
    augment: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(condition [B, 2, T, T], target image [B, 1, T, T], strip [B, 1, T, T]), float32.

    The strip is recomputed inside the padded frame, so strip pixels near the frame edge see the same
    mirrored continuation the gate's tiles see.
    """
    cond = np.empty((batch_size, 2, tile, tile), dtype=np.float32)
    target = np.empty((batch_size, 1, tile, tile), dtype=np.float32)
    strips = np.empty((batch_size, 1, tile, tile), dtype=np.float32)
    for b in range(batch_size):
        f = frames[int(rng.choice(len(frames), p=weights))]
        r, c = f.strip_pixels[int(rng.integers(len(f.strip_pixels)))]
        r0 = int(r - rng.integers(tile))
        c0 = int(c - rng.integers(tile))
        img = f.image[r0 : r0 + tile, c0 : c0 + tile]
        msk = f.mask[r0 : r0 + tile, c0 : c0 + tile]
        stp = f.strip[r0 : r0 + tile, c0 : c0 + tile]
        if augment:
            k = int(rng.integers(4))
            img, msk, stp = (np.rot90(a, k) for a in (img, msk, stp))
            if rng.random() < 0.5:
                img, msk, stp = (a[:, ::-1] for a in (img, msk, stp))
            if rng.random() < 0.5:
                img = img ** float(rng.uniform(0.7, 1.4))
        cond[b, 0] = np.where(stp, 0.0, img)
        cond[b, 1] = msk
        target[b, 0] = img
        strips[b, 0] = stp
    return cond, target, strips


# Share of training tiles per kind of frame: the template's strong edges must not dominate.
GROUP_SHARES = {"icbm152": 0.35, "otsu": 0.25, "blob": 0.40}


def frame_group(source: str) -> str:
    if source.startswith("icbm152"):
        return "icbm152"
    return "blob" if "/blob" in source else "otsu"


def sampling_weights(frames: list[PreparedFrame]) -> np.ndarray:
    """Per-frame probabilities that give each group its ``GROUP_SHARES`` share (renormalised if absent)."""
    groups = [frame_group(f.source) for f in frames]
    counts = {g: groups.count(g) for g in set(groups)}
    w = np.array([GROUP_SHARES[g] / counts[g] for g in groups], dtype=np.float64)
    return w / w.sum()


def batches(
    frames: list[PreparedFrame], batch_size: int, tile: int, seed: int, start_step: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless batches; step ``s`` always gets the same batch, so a resumed run sees what it would have."""
    weights = sampling_weights(frames)
    step = start_step
    while True:
        yield sample_batch(frames, batch_size, np.random.default_rng([seed, step]), tile, weights=weights)
        step += 1
