"""Value objects a verification produces; the database, the SR and the JSON report read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class FrameScore:
    """Verdict score (strip SSIM or its gain over the blur ceiling) of one segment on one source frame."""

    source_sop_instance_uid: str
    score: float
    strip_pixels: int
    ssim: float | None = None  # the paper's raw strip SSIM, when the score is another (ssim_gain)


@dataclass(frozen=True)
class SegmentResult:
    """Verdict of one segment: strip-weighted mean of its frame scores against its threshold."""

    number: int
    label: str
    score: float
    worst_frame_score: float
    worst_frame_uid: str
    threshold: float
    verdict: Verdict
    frames: int  # frames that had a boundary and were scored
    frame_scores: tuple[FrameScore, ...] = ()
    ssim: float | None = None  # strip-weighted raw strip SSIM beside the verdict score


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    provider: str  # the ONNX Runtime execution provider that ran, e.g. CPUExecutionProvider
    score: str = "ssim"  # the verdict score the model card prescribes (gate.verify.modelcard.ScoreKind)


@dataclass(frozen=True)
class SegResult:
    """Verdict of a whole SEG: it passes iff every segment passes.

    ``score`` is the lowest segment score (the segment that decides the verdict).
    """

    seg_sop_instance_uid: str
    study_instance_uid: str
    verdict: Verdict
    score: float
    segments: tuple[SegmentResult, ...]
    model: ModelInfo
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
