"""Configuration changes in the audit trail: recorded once, silent when unchanged, keys named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gate.config import AllowedPeer, Settings
from gate.config_audit import CONFIG_ACTOR, record_config_change, settings_fingerprint
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import AuditEvent, AuditKind


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    return session_factory(make_engine(url))


def _config_events(sessions: sessionmaker[Session]) -> list[AuditEvent]:
    with sessions() as s:
        query = select(AuditEvent).where(AuditEvent.kind == str(AuditKind.CONFIG_CHANGED))
        return list(s.scalars(query.order_by(AuditEvent.id)).all())


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(storage_dir=tmp_path, **changes)  # type: ignore[arg-type]


def test_first_start_records_the_fingerprint_once(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = _settings(tmp_path, allowed_callers=[AllowedPeer(ae_title="AISEG", host="10.0.0.5")])
    event = record_config_change(sessions, settings)
    assert event is not None
    [stored] = _config_events(sessions)
    assert stored.actor == CONFIG_ACTOR
    detail = json.loads(stored.detail or "")
    assert detail["fingerprint"] == settings_fingerprint(settings)
    assert detail["previous_fingerprint"] is None
    assert "allowed_callers" in detail["changed"] and "port" in detail["changed"]
    assert detail["settings"]["allowed_callers"] == [{"ae_title": "AISEG", "host": "10.0.0.5"}]


def test_unchanged_configuration_records_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    record_config_change(sessions, _settings(tmp_path))
    assert record_config_change(sessions, _settings(tmp_path)) is None
    assert len(_config_events(sessions)) == 1


def test_changed_port_and_threshold_are_named(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    first = _settings(tmp_path, thresholds={"liver": 0.8})
    record_config_change(sessions, first)
    second = _settings(tmp_path, port=11113, thresholds={"liver": 0.85})
    assert record_config_change(sessions, second) is not None
    events = _config_events(sessions)
    assert len(events) == 2
    detail = json.loads(events[-1].detail or "")
    assert detail["changed"] == ["port", "thresholds"]
    assert detail["previous_fingerprint"] == settings_fingerprint(first)
    assert detail["fingerprint"] == settings_fingerprint(second)
    # and back again is a change too, diffed against the latest recorded settings
    record_config_change(sessions, first)
    assert json.loads(_config_events(sessions)[-1].detail or "")["changed"] == ["port", "thresholds"]


def test_fingerprint_does_not_depend_on_key_order(tmp_path: Path) -> None:
    a = _settings(tmp_path, database_url="postgresql://gate:s3cret@db:5432/gate", thresholds={"b": 1, "a": 2})
    b = _settings(tmp_path, database_url="postgresql://gate:s3cret@db:5432/gate", thresholds={"a": 2, "b": 1})
    assert settings_fingerprint(a) == settings_fingerprint(b)


def test_stored_detail_holds_no_database_password(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url="postgresql://gate:s3cret@db:5432/gate")
    record_config_change(sessions, settings)
    [stored] = _config_events(sessions)
    assert "s3cret" not in (stored.detail or "")
    assert json.loads(stored.detail or "")["settings"]["database_url"] == "postgresql://gate:***@db:5432/gate"


def test_foreign_detail_text_is_treated_as_no_previous_settings(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as s:
        s.add(AuditEvent(kind=str(AuditKind.CONFIG_CHANGED), actor="admin", detail="edited by hand"))
    assert record_config_change(sessions, _settings(tmp_path)) is not None
    assert len(_config_events(sessions)) == 2
