"""The durable outbox: one row per (object, destination), retried with exponential backoff.

A send is at-least-once: a crash between the peer's Success and our commit resends the same SOP
Instance, which a PACS stores once. Transient failures (no association, timeout, 0xA7xx) are
retried; permanent refusals (0xA9xx, 0xCxxx) and exhausted attempts go to quarantine with reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gate.config import Settings
from gate.net.send import SendOutcome, send_files
from gate.net.status import is_transient
from gate.store.db import as_utc
from gate.store.models import Disposition, OutboxSend, SegVerification, SendState, utcnow

log = logging.getLogger("gate.route")

BATCH_SIZE = 50


def enqueue(
    session: Session, *, seg_uid: str, sop_instance_uid: str, sop_class_uid: str, path: Path, destination: str
) -> None:
    """Add a send unless the same object is already queued for that destination (idempotent)."""
    exists = session.scalar(
        select(OutboxSend).where(
            OutboxSend.sop_instance_uid == sop_instance_uid, OutboxSend.destination == destination
        )
    )
    if exists is None:
        session.add(
            OutboxSend(
                seg_sop_instance_uid=seg_uid,
                sop_instance_uid=sop_instance_uid,
                sop_class_uid=sop_class_uid,
                path=str(path),
                destination=destination,
            )
        )


def dispatch_due(settings: Settings, sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Send every due pending row, one association per destination; return rows settled."""
    now = now or utcnow()
    with sessions() as session:
        due = session.scalars(
            select(OutboxSend)
            .where(OutboxSend.state == SendState.PENDING, OutboxSend.next_attempt_at <= now)
            .order_by(OutboxSend.id)
            .limit(BATCH_SIZE)
        ).all()
    by_destination: dict[str, list[OutboxSend]] = defaultdict(list)
    for row in due:
        by_destination[row.destination].append(row)
    settled = 0
    for name, rows in by_destination.items():
        destination = getattr(settings.destinations, name, None)
        if destination is None:
            outcomes = [
                SendOutcome(Path(r.path), None, f"destination {name!r} is not configured") for r in rows
            ]
        else:
            outcomes = send_files(
                [Path(r.path) for r in rows],
                destination,
                calling_ae=settings.ae_title,
                timeout=settings.network_timeout_seconds,
            )
        by_path = {str(o.path): o for o in outcomes}
        with sessions.begin() as session:
            for row in rows:
                outcome = by_path.get(row.path) or SendOutcome(Path(row.path), None, "not attempted")
                # Re-read the row: an operator may have cancelled it while it was on the wire, and
                # merging the copy loaded before the send would silently undo that.
                current = session.get(OutboxSend, row.id)
                if current is not None:
                    settled += _settle(session, settings, current, outcome, now)
    return settled


def _settle(
    session: Session, settings: Settings, row: OutboxSend, outcome: SendOutcome, now: datetime
) -> int:
    if row.state != SendState.PENDING:
        # Cancelled (`gate discard`) while on the wire: record only a delivery, which did happen.
        if outcome.delivered:
            was = row.state
            row.attempts += 1
            row.last_status, row.last_error = outcome.status, outcome.error
            row.state, row.sent_at = SendState.SENT, now
            log.warning(
                "%s (SEG %s) reached %s although its send was %s meanwhile",
                row.sop_instance_uid,
                row.seg_sop_instance_uid,
                row.destination,
                was,
            )
        return 0
    row.attempts += 1
    row.last_status = outcome.status
    row.last_error = outcome.error
    seg = session.scalar(
        select(SegVerification).where(SegVerification.seg_sop_instance_uid == row.seg_sop_instance_uid)
    )
    if outcome.delivered:
        row.state = SendState.SENT
        row.sent_at = now
        if seg is not None and row.sop_instance_uid == seg.seg_sop_instance_uid:
            seg.disposition = Disposition.FORWARDED
        log.info(
            "delivered %s (SEG %s) to %s after %d attempt(s)",
            row.sop_instance_uid,
            row.seg_sop_instance_uid,
            row.destination,
            row.attempts,
        )
        return 1
    permanent = outcome.status is not None and not is_transient(outcome.status)
    if permanent or row.attempts >= settings.retry.max_attempts:
        row.state = SendState.FAILED
        why = (
            f"refused with status 0x{outcome.status:04X}"
            if permanent
            else f"gave up after {row.attempts} attempts"
        )
        reason = f"send of {row.sop_instance_uid} to {row.destination} {why}: {outcome.error or ''}".strip()
        if seg is not None and row.sop_instance_uid == seg.seg_sop_instance_uid:
            seg.disposition = Disposition.QUARANTINED
            seg.reason = reason
        log.error("%s (SEG %s)", reason, row.seg_sop_instance_uid)
        return 1
    delay = settings.retry.delay(row.attempts)
    row.next_attempt_at = as_utc(now) + timedelta(seconds=delay)
    log.warning(
        "send of %s (SEG %s) to %s failed (%s); retry %d in %.0f s",
        row.sop_instance_uid,
        row.seg_sop_instance_uid,
        row.destination,
        f"0x{outcome.status:04X}" if outcome.status is not None else outcome.error,
        row.attempts + 1,
        delay,
    )
    return 0
