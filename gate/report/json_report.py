"""The verification report for machines: a JSON document per SEG, written atomically next to the SR.

Only JSON-native types go in (``float``, ``int``, ``str``, ``None``): numpy scalars from the verifier are
converted, and a score that is not finite becomes ``null`` because JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gate.store.atomic import write_atomically
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


def _segment(segment: SegmentResult) -> dict[str, Any]:
    return {
        "number": int(segment.number),
        "label": str(segment.label),
        "score": _json_float(segment.score),
        "ssim": None if segment.ssim is None else _json_float(segment.ssim),
        "threshold": _json_float(segment.threshold),
        "verdict": segment.verdict.value,
        "frames": int(segment.frames),
        "worst_frame_score": _json_float(segment.worst_frame_score),
        "worst_frame_uid": str(segment.worst_frame_uid),
        "frame_scores": [
            {
                "source_sop_instance_uid": str(frame.source_sop_instance_uid),
                "score": _json_float(frame.score),
                "ssim": None if frame.ssim is None else _json_float(frame.ssim),
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
