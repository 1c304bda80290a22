"""Record: a verdict, its per-segment scores and its routing decision, in one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from gate.store.models import Disposition, SegmentScore, SegState, SegVerification
from gate.verify.result import SegResult, Verdict


def record_verdict(
    session: Session, row: SegVerification, result: SegResult, *, report_path: str, decided_at: datetime
) -> None:
    """Store the verification outcome on ``row`` (replacing any earlier segment rows)."""
    row.state = SegState.VERIFIED
    row.verdict = str(result.verdict)
    row.score = float(result.score)
    row.model_name = result.model.name
    row.model_version = result.model.version
    row.model_sha256 = result.model.sha256
    row.provider = result.model.provider
    row.timings = {k: round(float(v), 4) for k, v in result.timings.items()}
    row.report_path = report_path
    row.missing_uids = []
    row.decided_at = decided_at
    row.disposition = Disposition.FORWARDING if result.verdict == Verdict.PASS else Disposition.QUARANTINED
    failing = [s.label for s in result.segments if s.verdict != Verdict.PASS]
    row.reason = None if not failing else "segment(s) below threshold: " + ", ".join(failing)
    row.segments.clear()
    session.flush()
    for seg in result.segments:
        row.segments.append(
            SegmentScore(
                segment_number=seg.number,
                label=seg.label,
                score=float(seg.score),
                worst_frame_score=float(seg.worst_frame_score),
                worst_frame_uid=seg.worst_frame_uid,
                threshold=float(seg.threshold),
                verdict=str(seg.verdict),
                frames=seg.frames,
            )
        )


def record_incomplete(
    session: Session, row: SegVerification, missing: list[str], *, report_path: str, decided_at: datetime
) -> None:
    row.state = SegState.INCOMPLETE
    row.missing_uids = missing
    row.report_path = report_path
    row.decided_at = decided_at
    row.disposition = Disposition.QUARANTINED
    row.reason = f"{len(missing)} source instance(s) never arrived"


def record_error(session: Session, row: SegVerification, reason: str, *, decided_at: datetime) -> None:
    row.state = SegState.ERROR
    row.reason = reason
    row.decided_at = decided_at
    row.disposition = Disposition.QUARANTINED
