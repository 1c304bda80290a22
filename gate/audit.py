"""The audit trail: associations accepted/rejected, operator actions, configuration changes."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from gate.store.models import AuditEvent, AuditKind

log = logging.getLogger("gate.audit")


def record_audit(
    session: Session,
    kind: AuditKind,
    *,
    actor: str,
    peer_host: str | None = None,
    subject_uid: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """Add one audit row to ``session`` (the caller commits, with the action it records)."""
    event = AuditEvent(
        kind=str(kind), actor=actor[:128], peer_host=peer_host, subject_uid=subject_uid, detail=detail
    )
    session.add(event)
    log.info(
        "audit %s by %s%s%s%s",
        kind,
        actor,
        f" from {peer_host}" if peer_host else "",
        f" on {subject_uid}" if subject_uid else "",
        f": {detail[:200]}" if detail else "",  # config changes carry whole settings
    )
    return event
