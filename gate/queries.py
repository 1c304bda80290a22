"""Read-only views of the database for the operator commands."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gate.config import Settings
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import SegVerification


def list_verdicts(settings: Settings, *, limit: int = 50) -> list[dict[str, Any]]:
    """Recorded SEG verifications, newest first, with their per-segment scores."""
    upgrade(settings.db_url)
    sessions = session_factory(make_engine(settings.db_url))
    with sessions() as session:
        rows = session.scalars(
            select(SegVerification)
            .order_by(SegVerification.received_at.desc(), SegVerification.id.desc())
            .limit(limit)
        ).all()
        return [
            {
                "seg_sop_instance_uid": r.seg_sop_instance_uid,
                "study_instance_uid": r.study_instance_uid,
                "state": r.state,
                "verdict": r.verdict,
                "score": r.score,
                "disposition": r.disposition,
                "reason": r.reason,
                "missing_uids": r.missing_uids or [],
                "model": {
                    "name": r.model_name,
                    "version": r.model_version,
                    "sha256": r.model_sha256,
                    "provider": r.provider,
                },
                "timings": r.timings or {},
                "received_at": r.received_at.isoformat(),
                "decided_at": r.decided_at.isoformat() if r.decided_at else None,
                "segments": [
                    {
                        "number": s.segment_number,
                        "label": s.label,
                        "score": s.score,
                        "threshold": s.threshold,
                        "verdict": s.verdict,
                        "frames": s.frames,
                        "worst_frame_score": s.worst_frame_score,
                    }
                    for s in r.segments
                ],
            }
            for r in rows
        ]
