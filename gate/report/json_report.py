"""The verification report for machines: a JSON document per SEG, written atomically next to the SR.

Only JSON-native types go in (``float``, ``int``, ``str``, ``None``): numpy scalars from the verifier are
converted, and a score that is not finite becomes ``null`` because JSON has no NaN.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from gate.verify.result import ModelInfo, SegmentResult, SegResult

INCOMPLETE = "incomplete"

__all__ = [
    "INCOMPLETE",
    "incomplete_report",
    "verification_report",
    "write_atomically",
    "write_json_report",
]


def verification_report(result: SegResult) -> dict[str, Any]:
    """The verdict on one SEG: overall, per segment, and which model (and execution provider) ran."""
    return {
        "verdict": result.verdict.value,
        "score": _json_float(result.score),
        "seg_sop_instance_uid": str(result.seg_sop_instance_uid),
        "study_instance_uid": str(result.study_instance_uid),
        "segments": [_segment(segment) for segment in result.segments],
        "model": _model(result.model),
        "timings": {str(stage): _json_float(seconds) for stage, seconds in result.timings.items()},
    }


def incomplete_report(
    seg_sop_instance_uid: str,
    study_instance_uid: str,
    missing_source_uids: Sequence[str],
    waited_seconds: float,
) -> dict[str, Any]:
    """The report of a SEG whose source instances did not all arrive within the wait.

    Raises:
        ValueError: when no instance is missing (then the SEG is not incomplete) or the wait is negative.
    """
    missing = list(dict.fromkeys(str(uid) for uid in missing_source_uids))
    if not missing:
        raise ValueError(f"SEG {seg_sop_instance_uid} has no missing source instances: it is not incomplete")
    waited = float(waited_seconds)
    if not (math.isfinite(waited) and waited >= 0.0):
        raise ValueError(f"waited_seconds must be a finite number >= 0, got {waited_seconds!r}")
    return {
        "verdict": INCOMPLETE,
        "seg_sop_instance_uid": str(seg_sop_instance_uid),
        "study_instance_uid": str(study_instance_uid),
        "missing": missing,
        "waited_seconds": waited,
    }


def write_json_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as UTF-8 JSON atomically; NaN or infinity is refused (not valid JSON)."""
    data = (json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    write_atomically(path, lambda stream: stream.write(data))


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that readers see the old file or the whole new one, never a part.

    A temporary file in the same folder (so that the rename stays on one file system) is written,
    fsynced, renamed over ``path`` with ``os.replace``, and the folder is fsynced so the rename survives
    a power cut. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; the rename is durable enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _segment(segment: SegmentResult) -> dict[str, Any]:
    return {
        "number": int(segment.number),
        "label": str(segment.label),
        "score": _json_float(segment.score),
        "threshold": _json_float(segment.threshold),
        "verdict": segment.verdict.value,
        "frames": int(segment.frames),
        "worst_frame_score": _json_float(segment.worst_frame_score),
        "worst_frame_uid": str(segment.worst_frame_uid),
        "frame_scores": [
            {
                "source_sop_instance_uid": str(frame.source_sop_instance_uid),
                "score": _json_float(frame.score),
                "strip_pixels": int(frame.strip_pixels),
            }
            for frame in segment.frame_scores
        ],
    }


def _model(model: ModelInfo) -> dict[str, str]:
    return {
        "name": str(model.name),
        "version": str(model.version),
        "sha256": str(model.sha256),
        "provider": str(model.provider),
    }


def _json_float(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
