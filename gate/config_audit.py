"""Configuration changes in the audit trail: each start compares its settings with the last recorded.

An administrator (or an inspector) must be able to tell when the allow-list, TLS, destinations or
thresholds changed. The gate has no configuration API, so the change is observed where it takes
effect: at ``gate serve`` start, a fingerprint of the settings is compared with the one stored in
the last CONFIG_CHANGED audit event, and a new event names the top-level keys that differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from gate.audit import record_audit
from gate.config import Settings
from gate.store.models import AuditEvent, AuditKind

log = logging.getLogger("gate.audit")

CONFIG_ACTOR = "gate serve"
_REDACTED = "***"


def _redact_database_url(url: str) -> str:
    """The database URL without its password: the audit trail must not hold secrets."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _REDACTED


def canonical_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON values, secrets removed (only the database password is one:
    TLS keys are referenced by path, never inlined)."""
    data = settings.model_dump(mode="json")
    if data.get("database_url"):
        data["database_url"] = _redact_database_url(str(data["database_url"]))
    return data


def canonical_json(data: dict[str, Any]) -> str:
    """Key-sorted, whitespace-free JSON: equal settings give byte-identical text on every start."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def settings_fingerprint(settings: Settings) -> str:
    """SHA-256 (hex) of the canonical JSON of the settings."""
    return hashlib.sha256(canonical_json(canonical_settings(settings)).encode()).hexdigest()


def _previous(session: Session) -> tuple[str | None, dict[str, Any] | None]:
    """Fingerprint and settings stored by the last CONFIG_CHANGED event (None, None if none or if
    its detail is not ours to parse)."""
    last = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.kind == str(AuditKind.CONFIG_CHANGED))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    ).first()
    if last is None or not last.detail:
        return None, None
    try:
        detail = json.loads(last.detail)
    except json.JSONDecodeError:
        return None, None
    if not isinstance(detail, dict):
        return None, None
    settings = detail.get("settings")
    return detail.get("fingerprint"), settings if isinstance(settings, dict) else None


def changed_keys(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Top-level settings keys whose value differs (all of them when there is nothing to compare)."""
    if previous is None:
        return sorted(current)
    return sorted(k for k in previous.keys() | current.keys() if previous.get(k) != current.get(k))


def record_config_change(
    sessions: sessionmaker[Session], settings: Settings, *, actor: str = CONFIG_ACTOR
) -> AuditEvent | None:
    """Record a CONFIG_CHANGED audit event if ``settings`` differ from the last recorded ones.

    The detail is JSON: ``fingerprint``, ``previous_fingerprint``, ``changed`` (top-level keys) and
    the canonical ``settings``, which the next start diffs against. Returns the new event, or None
    when the configuration is unchanged.
    """
    current = canonical_settings(settings)
    fingerprint = hashlib.sha256(canonical_json(current).encode()).hexdigest()
    with sessions.begin() as session:
        previous_fingerprint, previous = _previous(session)
        if previous_fingerprint == fingerprint:
            log.info("configuration unchanged (sha256 %s)", fingerprint[:12])
            return None
        changed = changed_keys(previous, current)
        detail = {
            "fingerprint": fingerprint,
            "previous_fingerprint": previous_fingerprint,
            "changed": changed,
            "settings": current,
        }
        event = record_audit(
            session, AuditKind.CONFIG_CHANGED, actor=actor, detail=json.dumps(detail, sort_keys=True)
        )
        log.info(
            "configuration %s (sha256 %s): %s",
            "recorded" if previous_fingerprint is None else "changed",
            fingerprint[:12],
            ", ".join(changed) or "-",
        )
    return event
