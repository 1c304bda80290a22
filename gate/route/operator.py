"""Operator commands on the outbox and the quarantine: list, retry, release, discard.

These are plain functions on the database. The running gate needs no signal: its route worker polls
the outbox, so a send put back to ``pending`` here goes out on the worker's next poll. Every action
that changes what reaches the PACS is recorded in the audit trail, in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from gate.audit import record_audit
from gate.config import Settings
from gate.errors import GateError
from gate.route.outbox import enqueue
from gate.store.models import (
    AuditKind,
    Disposition,
    Instance,
    OutboxSend,
    SegState,
    SegVerification,
    SendState,
    utcnow,
)
from gate.store.spool import Spool

log = logging.getLogger("gate.route.operator")

PACS = "pacs"  # the destination a released SEG goes to (a key of Settings.destinations)


class OperatorError(GateError):
    """An operator command was refused (unknown UID, wrong state); the message says why."""


def list_outbox(sessions: sessionmaker[Session], *, include_all: bool = False) -> list[dict[str, Any]]:
    """Sends that still need the gate or an operator (pending, failed), oldest first; or all of them."""
    query = select(OutboxSend).order_by(OutboxSend.id)
    if not include_all:
        query = query.where(OutboxSend.state.in_([SendState.PENDING, SendState.FAILED]))
    with sessions() as session:
        return [
            {
                "seg_sop_instance_uid": r.seg_sop_instance_uid,
                "sop_instance_uid": r.sop_instance_uid,
                "destination": r.destination,
                "state": r.state,
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                "last_status": None if r.last_status is None else f"0x{r.last_status:04X}",
                "last_error": r.last_error,
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
            }
            for r in session.scalars(query).all()
        ]


def retry_failed(
    sessions: sessionmaker[Session],
    *,
    uid: str | None = None,
    all_failed: bool = False,
    by: str,
    now: datetime | None = None,
) -> list[str]:
    """Put failed sends back to ``pending``, due now, with their attempts reset; return their object UIDs.

    ``uid`` selects the sends of one SEG (or the one send of that object); ``all_failed`` every
    failed send. A SEG whose own send is requeued is ``forwarding`` again.
    """
    if (uid is None) == (not all_failed):
        raise OperatorError("name one SEG SOP Instance UID, or --all-failed (not both)")
    now = now or utcnow()
    with sessions.begin() as session:
        query = select(OutboxSend).where(OutboxSend.state == SendState.FAILED).order_by(OutboxSend.id)
        if uid is not None:
            query = query.where(
                or_(OutboxSend.seg_sop_instance_uid == uid, OutboxSend.sop_instance_uid == uid)
            )
        rows = session.scalars(query).all()
        if uid is not None and not rows:
            raise OperatorError(f"no failed send of {uid} (see `gate outbox`)")
        by_seg: dict[str, list[OutboxSend]] = {}
        for row in rows:
            row.state = SendState.PENDING
            row.attempts = 0
            row.next_attempt_at = now
            by_seg.setdefault(row.seg_sop_instance_uid, []).append(row)
            seg = _verification(session, row.seg_sop_instance_uid)
            if seg is not None and row.sop_instance_uid == seg.seg_sop_instance_uid:
                seg.disposition = Disposition.FORWARDING
        for seg_uid, seg_rows in by_seg.items():
            record_audit(
                session,
                AuditKind.RETRY,
                actor=by,
                subject_uid=seg_uid,
                detail="requeued "
                + ", ".join(f"{r.sop_instance_uid} to {r.destination} (last: {_last(r)})" for r in seg_rows),
            )
        return [r.sop_instance_uid for r in rows]


@dataclass(frozen=True)
class Released:
    seg_sop_instance_uid: str
    destination: str
    path: Path


def release(
    settings: Settings,
    sessions: sessionmaker[Session],
    seg_uid: str,
    *,
    by: str,
    reason: str,
    now: datetime | None = None,
) -> Released:
    """Forward a quarantined SEG to the PACS on an operator's word, recording who and why.

    The SEG may be quarantined for any cause: a failing verdict, an error, missing sources, or a
    send the PACS refused. Its verdict and scores stay as recorded; only the disposition changes.
    """
    by, reason = _required(by, "--by"), _required(reason, "--reason")
    if getattr(settings.destinations, PACS, None) is None:
        raise OperatorError(f"no {PACS!r} destination is configured: nowhere to release to")
    now = now or utcnow()
    spool = Spool(settings.spool_dir)
    with sessions.begin() as session:
        seg = _quarantined(session, seg_uid)
        inst = session.get(Instance, seg_uid)
        if inst is None:  # foreign key: cannot happen unless the database was edited by hand
            raise OperatorError(f"SEG {seg_uid} has no stored instance")
        path = spool.absolute(inst.path)
        if not path.exists():
            raise OperatorError(f"SEG {seg_uid}: its file {path} is missing from the spool")
        existing = session.scalar(
            select(OutboxSend).where(OutboxSend.sop_instance_uid == seg_uid, OutboxSend.destination == PACS)
        )
        if existing is None:
            enqueue(
                session,
                seg_uid=seg_uid,
                sop_instance_uid=seg_uid,
                sop_class_uid=inst.sop_class_uid,
                path=path,
                destination=PACS,
            )
        elif existing.state in (SendState.FAILED, SendState.CANCELLED):
            existing.state = SendState.PENDING
            existing.attempts = 0
            existing.next_attempt_at = now
            existing.path = str(path)
        else:
            raise OperatorError(f"SEG {seg_uid} is already {existing.state} to {PACS}")
        seg.disposition = Disposition.FORWARDING
        record_audit(session, AuditKind.RELEASE, actor=by, subject_uid=seg_uid, detail=reason)
    log.info("SEG %s (study %s) released to %s by %s", seg_uid, seg.study_instance_uid, PACS, by)
    return Released(seg_uid, PACS, path)


@dataclass(frozen=True)
class Discarded:
    seg_sop_instance_uid: str
    cancelled: list[str]  # object UIDs whose sends were cancelled
    removed: Path | None  # the SEG's spool file, if it was still there


def discard(
    settings: Settings, sessions: sessionmaker[Session], seg_uid: str, *, by: str, reason: str
) -> Discarded:
    """Mark a decided SEG discarded, cancel its undelivered sends, delete its spool file.

    Only the SEG's own file goes: its source images stay, since other SEGs may reference them. The
    database rows stay as the record of what was received and decided. A SEG still waiting for its
    verdict, or already delivered to the PACS, is refused.
    """
    by, reason = _required(by, "--by"), _required(reason, "--reason")
    spool = Spool(settings.spool_dir)
    with sessions.begin() as session:
        seg = _verification(session, seg_uid)
        if seg is None:
            raise OperatorError(f"no SEG {seg_uid} is known to the gate")
        if seg.state == SegState.WAITING:
            raise OperatorError(f"SEG {seg_uid} is still being assembled/verified; wait for its verdict")
        if seg.disposition == Disposition.FORWARDED:
            raise OperatorError(f"SEG {seg_uid} was already forwarded to the PACS; remove it there")
        if seg.disposition == Disposition.DISCARDED:
            raise OperatorError(f"SEG {seg_uid} is already discarded")
        rows = session.scalars(
            select(OutboxSend).where(
                OutboxSend.seg_sop_instance_uid == seg_uid,
                OutboxSend.state.in_([SendState.PENDING, SendState.FAILED]),
            )
        ).all()
        for row in rows:
            row.state = SendState.CANCELLED
        seg.disposition = Disposition.DISCARDED
        inst = session.get(Instance, seg_uid)
        path = spool.absolute(inst.path) if inst is not None else None
        cancelled = [r.sop_instance_uid for r in rows]
        record_audit(
            session,
            AuditKind.DISCARD,
            actor=by,
            subject_uid=seg_uid,
            detail=reason + (f" (cancelled sends: {', '.join(cancelled)})" if cancelled else ""),
        )
    # After the commit: if the commit failed, the file must still be there.
    removed = None
    if path is not None and path.exists():
        path.unlink()
        removed = path
    log.info(
        "SEG %s (study %s) discarded by %s; %d send(s) cancelled",
        seg_uid,
        seg.study_instance_uid,
        by,
        len(rows),
    )
    return Discarded(seg_uid, cancelled, removed)


def _verification(session: Session, seg_uid: str) -> SegVerification | None:
    return session.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == seg_uid))


def _quarantined(session: Session, seg_uid: str) -> SegVerification:
    seg = _verification(session, seg_uid)
    if seg is None:
        raise OperatorError(f"no SEG {seg_uid} is known to the gate")
    if seg.disposition != Disposition.QUARANTINED:
        state = seg.disposition or seg.state
        raise OperatorError(f"SEG {seg_uid} is not quarantined (it is {state}); nothing to release")
    return seg


def _required(value: str, option: str) -> str:
    if not value or not value.strip():
        raise OperatorError(f"{option} must not be empty: the audit trail records who and why")
    return value.strip()


def _last(row: OutboxSend) -> str:
    if row.last_status is not None:
        return f"0x{row.last_status:04X}" + (f" {row.last_error}" if row.last_error else "")
    return row.last_error or "no attempt"
