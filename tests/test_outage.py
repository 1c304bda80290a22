"""The PACS goes away and comes back; the PACS refuses for good. Nothing is lost, nothing sent twice.

`gate serve` runs as a subprocess, as in production; the PACS is a real Orthanc (restarted on the same
ports and storage) or a pynetdicom SCP that answers the status we set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from gate.cli import app
from gate.config import Destination
from gate.net.send import send_files
from gate.store.db import make_engine, session_factory
from gate.store.models import AuditEvent, OutboxSend, SegState, SegVerification
from gate.synth.study import StudyFiles, write_synthetic_study
from tests.conftest import (
    CountingPeer,
    OrthancPacs,
    RunningGate,
    free_port,
    start_gate,
    stop_gate,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

FAST_RETRY = "retry: {initial_seconds: 0.5, factor: 2, max_seconds: 2, max_attempts: 100}"
N_SLICES = 6  # enough for a boundary on several frames, quick to verify


def _gate(tmp_path: Path, pacs_port: int) -> RunningGate:
    port, storage, db = free_port(), tmp_path / "var", f"sqlite:///{tmp_path / 'gate.db'}"
    config = write_config(
        tmp_path / "config.yaml", port=port, storage=storage, database_url=db, pacs_port=pacs_port
    )
    lines = [FAST_RETRY if line.startswith("retry:") else line for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")
    return start_gate(config, port, storage, db, tmp_path / "gate.log")


def _send(gate: RunningGate, paths: list[Path]) -> None:
    outcomes = send_files(
        paths, Destination(ae_title="QGATE", host="127.0.0.1", port=gate.port), calling_ae="AISEG"
    )
    assert all(o.delivered for o in outcomes), [o for o in outcomes if not o.delivered]


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _verdicts(sessions: sessionmaker[Session], n: int, timeout: float = 80.0) -> dict[str, SegVerification]:
    def decided() -> dict[str, SegVerification] | None:
        with sessions() as s:
            rows = s.scalars(select(SegVerification)).all()
        done = len(rows) == n and all(r.state != SegState.WAITING for r in rows)
        return {r.seg_sop_instance_uid: r for r in rows} if done else None

    return wait_until(decided, timeout=timeout, interval=0.3, what=f"{n} SEG verdicts")


def _sends(sessions: sessionmaker[Session]) -> list[OutboxSend]:
    with sessions() as s:
        return list(s.scalars(select(OutboxSend).order_by(OutboxSend.id)).all())


def _cli(gate: RunningGate, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--config", str(gate.config)])
    return result.exit_code, result.output


def test_pacs_outage_retries_then_delivers_each_seg_once(tmp_path: Path, orthanc: OrthancPacs) -> None:
    pacs = orthanc
    studies: list[StudyFiles] = [
        write_synthetic_study(tmp_path / f"study{seed}", seed=seed, n_slices=N_SLICES)
        for seed in (31, 32, 33)
    ]
    gate = _gate(tmp_path, pacs.dicom_port)
    sessions = session_factory(make_engine(gate.database_url))
    try:
        pacs.stop()  # the PACS goes down before anything is forwarded
        for study in studies:
            _send(gate, [*study.image_paths, study.good_seg_path, study.bad_seg_path])
        rows = _verdicts(sessions, 2 * len(studies))
        assert all(r.state == SegState.VERIFIED for r in rows.values()), {
            u: r.reason for u, r in rows.items()
        }

        # One send per SEG: the SEG to the PACS on pass, its SR to the report destination on fail.
        def retried() -> bool:
            sends = _sends(sessions)
            return len(sends) == len(rows) and all(r.attempts >= 2 and r.last_error for r in sends)

        wait_until(retried, timeout=30, interval=0.3, what="every send to have failed at least twice")
        assert all(r.state == "pending" and r.last_status is None for r in _sends(sessions))
        code, out = _cli(gate, "outbox", "--json")
        assert code == 0 and len(json.loads(out)) == len(rows)
        failed_attempts = {r.sop_instance_uid: r.attempts for r in _sends(sessions)}

        pacs.start()  # same ports, same storage
        wait_until(
            lambda: all(r.state == "sent" for r in _sends(sessions)),
            timeout=30,
            interval=0.3,
            what="every send delivered after the PACS came back",
        )
        with sessions() as s:
            decided = {r.seg_sop_instance_uid: r for r in s.scalars(select(SegVerification)).all()}
        passing = [u for u, r in decided.items() if r.verdict == "pass"]
        failing = [u for u, r in decided.items() if r.verdict == "fail"]
        assert passing, "no SEG passed: the model or the synthetic study changed"
        for uid in passing:
            assert decided[uid].disposition == "forwarded"
            assert pacs.series_instance_count(uid) == 1, uid  # arrived, exactly once
        for uid in failing:
            assert decided[uid].disposition == "quarantined"
            assert not pacs.has_instance(uid)
            assert pacs.series_instance_count(decided[uid].sr_sop_instance_uid) == 1
        assert pacs.instance_count() == len(decided)  # one SEG or one SR per SEG, nothing else
        for row in _sends(sessions):
            # The failures before the outage ended are on record, plus the one that delivered.
            assert row.attempts >= failed_attempts[row.sop_instance_uid] + 1 >= 3
            assert row.last_status == 0 and row.sent_at is not None
        code, out = _cli(gate, "outbox", "--json")
        assert code == 0 and json.loads(out) == []
    finally:
        stop_gate(gate)


def test_permanent_refusal_quarantines_then_operator_retries_and_releases(tmp_path: Path) -> None:
    peer = CountingPeer(status=0xA900)  # Error: Data Set does not match SOP Class — permanent
    study = write_synthetic_study(tmp_path / "study", seed=34, n_slices=N_SLICES)
    good, bad = _uid(study.good_seg_path), _uid(study.bad_seg_path)
    gate = _gate(tmp_path, peer.port)
    sessions = session_factory(make_engine(gate.database_url))
    try:
        _send(gate, [*study.image_paths, study.good_seg_path, study.bad_seg_path])
        rows = _verdicts(sessions, 2)
        if rows[good].verdict != "pass" or rows[bad].verdict != "fail":
            pytest.fail(f"expected good=pass, bad=fail; got {rows[good].verdict}, {rows[bad].verdict}")

        def refused() -> bool:
            sends = _sends(sessions)
            return len(sends) == 2 and all(r.state == "failed" for r in sends)

        wait_until(refused, timeout=20, interval=0.3, what="both sends refused for good")
        for row in _sends(sessions):
            assert (row.attempts, row.last_status) == (1, 0xA900)  # permanent: no retry
        with sessions() as s:
            seg = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == good))
            assert seg is not None and seg.disposition == "quarantined" and "0xA900" in (seg.reason or "")

        code, out = _cli(gate, "outbox", "--json")
        assert code == 0, out
        listed = {r["sop_instance_uid"]: r for r in json.loads(out)}
        assert listed[good]["state"] == "failed" and listed[good]["last_status"] == "0xA900"
        assert listed[rows[bad].sr_sop_instance_uid]["destination"] == "reports"

        # The PACS administrator fixes the PACS; the operator requeues the SEG; the running gate sends it.
        peer.status = 0x0000
        code, out = _cli(gate, "retry", good, "--by", "pacs-admin")
        assert code == 0, out
        wait_until(lambda: peer.count(good) == 1, timeout=20, interval=0.3, what="the retried SEG delivered")

        # A clinician reviewed the failing SEG and releases it anyway.
        code, out = _cli(gate, "release", bad, "--by", "Dr. Rivera", "--reason", "reviewed, acceptable")
        assert code == 0, out
        wait_until(lambda: peer.count(bad) == 1, timeout=20, interval=0.3, what="the released SEG delivered")
        code, out = _cli(gate, "retry", "--all-failed", "--by", "pacs-admin")  # the bad SEG's SR
        assert code == 0, out

        def settled() -> bool:
            return all(r.state == "sent" for r in _sends(sessions)) and len(_sends(sessions)) == 3

        wait_until(settled, timeout=20, interval=0.3, what="every send delivered")
        with sessions() as s:
            decided = {r.seg_sop_instance_uid: r for r in s.scalars(select(SegVerification)).all()}
            audit = s.scalars(
                select(AuditEvent)
                .where(AuditEvent.kind.in_(["retry", "release", "discard"]))
                .order_by(AuditEvent.id)
            ).all()
        assert decided[good].disposition == "forwarded"
        assert (decided[bad].verdict, decided[bad].disposition) == ("fail", "forwarded")
        assert [(e.kind, e.actor, e.subject_uid) for e in audit] == [
            ("retry", "pacs-admin", good),
            ("release", "Dr. Rivera", bad),
            ("retry", "pacs-admin", bad),
        ]
        assert audit[1].detail == "reviewed, acceptable"
        assert sorted(peer.received) == sorted([good, bad, decided[bad].sr_sop_instance_uid])
        code, out = _cli(gate, "release", bad, "--by", "x", "--reason", "y")
        assert code == 2 and "not quarantined" in out
    finally:
        stop_gate(gate)
        peer.shutdown()
