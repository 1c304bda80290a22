"""Per-label thresholds for a target sensitivity, from a site's own labelled segmentations (issue 3, item 8).

A site knows its engines and anatomy: it labels some SEGs (or NIfTI masks) good or bad, the gate scores
them exactly as it would in production, and for each segment label we choose the lowest threshold that
still rejects the target share of the bad ones — the fewest false rejects for that sensitivity. The
thresholds go where the gate reads them: the ``thresholds:`` mapping of ``config.yaml``
(:attr:`gate.config.Settings.thresholds`), replaced in place with every other line kept.

Labelled sets (a CSV beside the data, header row required):

* DICOM: ``seg,segment,label`` — ``seg`` a SEG file path relative to the folder, ``segment`` its segment
  label (as in the SEG's Segment Label), ``label`` ``good`` or ``bad`` (or a ``dice`` column instead:
  good iff Dice >= 0.8). Source images are found in the same folder by SOP Instance UID.
* NIfTI/NRRD/MetaImage: ``image,mask,segment,label`` — an image and a binary mask of one segment.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import yaml

from gate.verify.result import FrameScore
from gate.verify.strip import has_boundary
from gate.verify.verifier import Verifier, aggregate_segment

GOOD_DICE = 0.8


@dataclass(frozen=True)
class LabelledScore:
    segment: str  # segment label
    score: float
    good: bool
    item: str  # where it came from, for the report


@dataclass(frozen=True)
class LabelThreshold:
    segment: str
    threshold: float
    n_good: int
    n_bad: int
    sensitivity: float  # share of the bad ones rejected at the threshold
    false_reject: float  # share of the good ones rejected at the threshold
    note: str = ""


def _is_good(row: Mapping[str, str]) -> bool:
    if row.get("label"):
        value = row["label"].strip().lower()
        if value not in ("good", "bad"):
            raise ValueError(f"label must be 'good' or 'bad', got {row['label']!r}")
        return value == "good"
    if row.get("dice"):
        return float(row["dice"]) >= GOOD_DICE
    raise ValueError(f"row {dict(row)} has neither a 'label' nor a 'dice' column")


def threshold_for_sensitivity(good: Sequence[float], bad: Sequence[float], target: float) -> float:
    """The lowest threshold (fail iff score < threshold) that rejects at least ``target`` of ``bad``.

    Rejecting k = ceil(target · n_bad) bad masks needs a threshold just above the k-th lowest bad score;
    anything higher only rejects more good ones.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    b = np.sort(np.asarray(bad, np.float64))
    if b.size == 0:
        raise ValueError("no bad segmentations to calibrate a sensitivity on")
    k = max(1, math.ceil(target * b.size - 1e-9))
    return float(np.nextafter(b[k - 1], np.inf))


def calibrate(
    scores: Sequence[LabelledScore], target_sensitivity: float = 0.95, *, min_bad: int = 1
) -> list[LabelThreshold]:
    """One threshold per segment label that has at least ``min_bad`` bad examples."""
    out = []
    for label in sorted({s.segment for s in scores}):
        good = [s.score for s in scores if s.segment == label and s.good]
        bad = [s.score for s in scores if s.segment == label and not s.good]
        if len(bad) < min_bad:
            out.append(
                LabelThreshold(
                    label,
                    float("nan"),
                    len(good),
                    len(bad),
                    float("nan"),
                    float("nan"),
                    "not enough bad examples: the card's threshold stays",
                )
            )
            continue
        t = threshold_for_sensitivity(good, bad, target_sensitivity)
        sens = float(np.mean(np.asarray(bad) < t))
        frr = float(np.mean(np.asarray(good) < t)) if good else float("nan")
        note = "" if good else "no good examples: false-reject rate unknown"
        out.append(LabelThreshold(label, t, len(good), len(bad), sens, frr, note))
    return out


# --- scoring a labelled set ----------------------------------------------------------------------


def score_dicom_set(folder: Path, labels_csv: Path, verifier: Verifier) -> list[LabelledScore]:
    """Segment scores of labelled SEGs, computed by the gate's own decoding and verifier."""
    from gate.assemble.loader import load_verification_input

    folder = Path(folder)
    sources: dict[str, pydicom.Dataset] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() not in (".csv", ".yaml", ".yml", ".txt"):
            try:
                ds = pydicom.dcmread(path)
            except (pydicom.errors.InvalidDicomError, OSError):
                continue
            if ds.get("Modality") != "SEG" and "SOPInstanceUID" in ds:
                sources[str(ds.SOPInstanceUID)] = ds
    results: dict[str, dict[str, float]] = {}
    out = []
    with open(labels_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            seg_file = row["seg"]
            if seg_file not in results:
                seg = pydicom.dcmread(folder / seg_file)
                inp = load_verification_input(seg, {u: sources[u] for u in _referenced(seg) if u in sources})
                results[seg_file] = {s.label: s.score for s in verifier.verify(inp).segments}
            segment = row["segment"]
            if segment not in results[seg_file]:
                raise ValueError(
                    f"{seg_file} has no segment labelled {segment!r} ({sorted(results[seg_file])})"
                )
            out.append(
                LabelledScore(segment, results[seg_file][segment], _is_good(row), f"{seg_file}:{segment}")
            )
    return out


def _referenced(seg: pydicom.Dataset) -> list[str]:
    from gate.assemble.references import referenced_source_uids

    return referenced_source_uids(seg)


def score_file_set(folder: Path, labels_csv: Path, verifier: Verifier) -> list[LabelledScore]:
    """Segment scores of labelled image/mask file pairs: frames scored and aggregated as the gate does."""
    from gate.model.sources import read_volume_file

    folder = Path(folder)
    out = []
    with open(labels_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            image, _ = read_volume_file(folder / row["image"])
            mask, _ = read_volume_file(folder / row["mask"])
            if mask.shape != image.shape:
                raise ValueError(
                    f"{row['mask']} shape {mask.shape} differs from {row['image']} {image.shape}"
                )
            frames: list[FrameScore] = []
            for z in range(image.shape[0]):
                m = mask[z] > 0
                if has_boundary(m):
                    fs = verifier.score_frame(image[z], m, source_uid=f"{row['image']}#{z}")
                    if fs is not None:
                        frames.append(fs)
            segment = row["segment"]
            result = aggregate_segment(1, segment, frames, verifier.threshold_for(segment))
            out.append(LabelledScore(segment, result.score, _is_good(row), f"{row['image']}:{row['mask']}"))
    return out


# --- writing thresholds where the gate reads them -------------------------------------------------


def thresholds_mapping(found: Sequence[LabelThreshold], decimals: int = 4) -> dict[str, float]:
    """Label -> threshold for the labels that got one, rounded up (never less sensitive)."""
    scale = 10**decimals
    out = {}
    for t in found:
        if math.isfinite(t.threshold):
            value = math.ceil(t.threshold * scale) / scale
            out[t.segment] = value if value >= t.threshold else value + 1 / scale
    return out


_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def update_config_thresholds(config_path: Path, thresholds: Mapping[str, float]) -> str:
    """Replace the top-level ``thresholds:`` block of a config.yaml, keeping every other line and comment.

    Labels already there but not recalibrated keep their value. Returns the new text (also written).
    """
    path = Path(config_path)
    text = path.read_text() if path.is_file() else ""
    current = (yaml.safe_load(text) or {}).get("thresholds") or {}
    merged = {
        **{str(k): float(v) for k, v in current.items()},
        **{k: float(v) for k, v in thresholds.items()},
    }
    block = yaml.safe_dump(
        {"thresholds": merged}, sort_keys=True, allow_unicode=True, default_flow_style=False
    )
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("thresholds:")), None)
    if start is None:
        new = text + ("" if text.endswith("\n") or not text else "\n") + block
    else:
        end = start + 1
        while end < len(lines) and not _TOP_KEY.match(lines[end]) and not lines[end].startswith("#"):
            end += 1
        new = "".join(lines[:start]) + block + "".join(lines[end:])
    parsed = yaml.safe_load(new) or {}
    if parsed.get("thresholds") != merged:
        raise ValueError(f"could not rewrite the thresholds of {path} safely")
    path.write_text(new)
    return new
