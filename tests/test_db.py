"""Migrations create the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import Base, Instance, SegmentScore, SegVerification
from tests.conftest import drop_postgres, postgres_url


def _check_schema(url: str) -> None:
    upgrade(url)
    upgrade(url)  # idempotent: `gate serve` upgrades on every start
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {"instances", "seg_verifications", "segment_scores", "outbox", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.add(
            Instance(
                sop_instance_uid="1.2.3.4",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.66.4",
                study_instance_uid="1.2.3",
                series_instance_uid="1.2.3.9",
                modality="SEG",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                path="1.2.3/1.2.3.4.dcm",
                size_bytes=10,
                calling_ae="AI",
                is_seg=True,
            )
        )
        v = SegVerification(
            seg_sop_instance_uid="1.2.3.4",
            study_instance_uid="1.2.3",
            referenced_uids=["1.2.3.5"],
            timings={"verify": 1.5},
        )
        v.segments.append(
            SegmentScore(
                segment_number=1,
                label="Liver",
                score=0.8,
                worst_frame_score=0.7,
                worst_frame_uid="1.2.3.5",
                threshold=0.6,
                verdict="pass",
                frames=3,
            )
        )
        s.add(v)
    with sessions() as s:
        row = s.get(SegVerification, v.id)
        assert row is not None and row.state == "waiting" and row.referenced_uids == ["1.2.3.5"]
        assert row.segments[0].label == "Liver" and row.timings == {"verify": 1.5}
    engine.dispose()


def test_sqlite_schema(tmp_path: Path) -> None:
    _check_schema(f"sqlite:///{tmp_path / 'gate.db'}")


@pytest.mark.postgres
def test_postgres_schema() -> None:
    url = postgres_url()
    try:
        _check_schema(url)
    finally:
        drop_postgres(url)
