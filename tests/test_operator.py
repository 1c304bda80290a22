"""Operator commands (gate outbox / retry / release / discard) on a real database and a real SCP peer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

import gate.route.outbox as outbox_module
from gate.cli import app
from gate.config import load_settings
from gate.dicom import SR_SOP_CLASS
from gate.route.operator import OperatorError, discard, release, retry_failed
from gate.route.outbox import dispatch_due, enqueue
from gate.store.db import as_utc, make_engine, session_factory, upgrade
from gate.store.models import AuditEvent, Instance, OutboxSend, SegVerification, SendState, utcnow
from gate.store.spool import Spool
from gate.synth.study import StudyFiles, write_synthetic_study
from tests.conftest import CountingPeer


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("study"), seed=11, n_slices=3)


@dataclass
class Gate:
    """The gate's database and spool as the operator commands see them, without a running gate."""

    config: Path
    sessions: sessionmaker[Session]
    spool: Spool
    study: StudyFiles

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings(self.config)

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(self.config)])
        return result.exit_code, result.output

    def store(self, path: Path) -> str:
        """Put a file in the spool with its instance row, as the Storage SCP would."""
        ds = dcmread(path)
        uid = str(ds.SOPInstanceUID)
        rel = self.spool.write(str(ds.StudyInstanceUID), uid, path.read_bytes())
        with self.sessions.begin() as s:
            s.add(
                Instance(
                    sop_instance_uid=uid,
                    sop_class_uid=str(ds.SOPClassUID),
                    study_instance_uid=str(ds.StudyInstanceUID),
                    series_instance_uid=str(ds.SeriesInstanceUID),
                    modality=str(ds.Modality),
                    transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                    path=rel.as_posix(),
                    size_bytes=path.stat().st_size,
                    calling_ae="AISEG",
                    is_seg=ds.Modality == "SEG",
                )
            )
        return uid

    def decided_seg(self, path: Path, *, verdict: str | None, state: str, disposition: str) -> str:
        uid = self.store(path)
        with self.sessions.begin() as s:
            s.add(
                SegVerification(
                    seg_sop_instance_uid=uid,
                    study_instance_uid=self.study.study_instance_uid,
                    state=state,
                    verdict=verdict,
                    disposition=disposition,
                    reason=None if verdict == "pass" else "segment(s) below threshold: Lesion",
                    decided_at=utcnow(),
                )
            )
        return uid

    def send(self, seg_uid: str, *, uid: str | None = None, destination: str = "pacs", **state) -> None:  # type: ignore[no-untyped-def]
        """An outbox row for the SEG itself (or ``uid``), in the given state."""
        with self.sessions.begin() as s:
            inst = s.get(Instance, seg_uid)
            enqueue(
                s,
                seg_uid=seg_uid,
                sop_instance_uid=uid or seg_uid,
                sop_class_uid=SR_SOP_CLASS if uid else inst.sop_class_uid,
                path=self.spool.absolute(inst.path) if uid is None else Path(f"/nonexistent/{uid}.dcm"),
                destination=destination,
            )
            s.flush()
            row = s.scalar(select(OutboxSend).where(OutboxSend.sop_instance_uid == (uid or seg_uid)))
            for key, value in state.items():
                setattr(row, key, value)

    def seg(self, uid: str) -> SegVerification:
        with self.sessions() as s:
            row = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == uid))
            assert row is not None
            return row

    def sends(self) -> list[OutboxSend]:
        with self.sessions() as s:
            return list(s.scalars(select(OutboxSend).order_by(OutboxSend.id)).all())

    def audit(self) -> list[AuditEvent]:
        with self.sessions() as s:
            return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all())


@pytest.fixture
def gate(tmp_path: Path, study: StudyFiles, peer: CountingPeer) -> Gate:
    storage = tmp_path / "var"
    db = f"sqlite:///{tmp_path / 'gate.db'}"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"storage_dir: {storage}\n"
        f"database_url: {db}\n"
        "destinations:\n"
        f"  pacs: {{ae_title: PACS, host: 127.0.0.1, port: {peer.port}}}\n"
        f"  reports: {{ae_title: PACS, host: 127.0.0.1, port: {peer.port}}}\n"
        "retry: {initial_seconds: 0.5, factor: 2, max_seconds: 2, max_attempts: 3}\n"
    )
    upgrade(db)
    return Gate(config, session_factory(make_engine(db)), Spool(storage / "spool"), study)


# -- gate outbox -------------------------------------------------------------------------------------
def test_outbox_lists_pending_and_failed_sends(gate: Gate) -> None:
    good = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="forwarding"
    )
    bad = gate.decided_seg(
        gate.study.bad_seg_path, verdict="fail", state="verified", disposition="quarantined"
    )
    gate.send(good, state="failed", attempts=1, last_status=0xA900, last_error="refused by policy")
    gate.send(bad, uid="1.2.3.4", destination="reports", attempts=2, last_error="no association")
    gate.send(bad, uid="1.2.3.5", destination="reports", state="sent", attempts=1, last_status=0)

    code, out = gate.cli("outbox", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [(r["sop_instance_uid"], r["state"]) for r in rows] == [(good, "failed"), ("1.2.3.4", "pending")]
    failed = rows[0]
    assert failed == {
        **failed,
        "seg_sop_instance_uid": good,
        "destination": "pacs",
        "attempts": 1,
        "last_status": "0xA900",
        "last_error": "refused by policy",
    }
    assert rows[1]["last_status"] is None and rows[1]["last_error"] == "no association"
    assert rows[1]["next_attempt_at"]

    code, out = gate.cli("outbox", "--json", "--all")
    assert code == 0 and len(json.loads(out)) == 3
    code, out = gate.cli("outbox")  # the table names the refusal in hex
    assert code == 0 and "0xA900" in out and "refused by policy" in out


# -- gate retry --------------------------------------------------------------------------------------
def test_retry_requeues_failed_send_and_the_gate_delivers_it(gate: Gate, peer: CountingPeer) -> None:
    uid = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="quarantined"
    )
    gate.send(
        uid, state="failed", attempts=3, last_status=0xA900, next_attempt_at=utcnow() + timedelta(hours=1)
    )
    before = utcnow()
    code, out = gate.cli("retry", uid, "--by", "alice")
    assert code == 0, out
    assert "requeued 1" in out
    [row] = gate.sends()
    assert (row.state, row.attempts) == ("pending", 0)
    assert before - timedelta(seconds=1) <= as_utc(row.next_attempt_at) <= utcnow()
    assert gate.seg(uid).disposition == "forwarding"
    [event] = gate.audit()
    assert (event.kind, event.actor, event.subject_uid) == ("retry", "alice", uid)
    assert "0xA900" in event.detail

    assert dispatch_due(gate.settings, gate.sessions) == 1  # what the running gate's route worker does
    assert peer.received == [uid]
    assert gate.seg(uid).disposition == "forwarded"


def test_retry_all_failed(gate: Gate) -> None:
    good = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="quarantined"
    )
    bad = gate.decided_seg(
        gate.study.bad_seg_path, verdict="fail", state="verified", disposition="quarantined"
    )
    gate.send(good, state="failed", attempts=3)
    gate.send(bad, uid="1.2.3.4", destination="reports", state="failed", attempts=3)
    gate.send(bad, uid="1.2.3.5", destination="reports", state="sent", attempts=1)
    assert sorted(retry_failed(gate.sessions, all_failed=True, by="bob")) == sorted([good, "1.2.3.4"])
    assert [r.state for r in gate.sends()] == ["pending", "pending", "sent"]
    assert gate.seg(bad).disposition == "quarantined"  # its SR was requeued, not the SEG
    assert {e.subject_uid for e in gate.audit()} == {good, bad}
    assert retry_failed(gate.sessions, all_failed=True, by="bob") == []


def test_retry_refusals(gate: Gate) -> None:
    code, out = gate.cli("retry", "1.2.3.999")
    assert code == 2 and "no failed send" in out
    code, out = gate.cli("retry")
    assert code == 2 and "--all-failed" in out
    with pytest.raises(OperatorError):
        retry_failed(gate.sessions, uid="1.2.3", all_failed=True, by="x")


# -- gate release ------------------------------------------------------------------------------------
def test_release_of_failed_verdict_forwards_it_and_audits(gate: Gate, peer: CountingPeer) -> None:
    bad = gate.decided_seg(
        gate.study.bad_seg_path, verdict="fail", state="verified", disposition="quarantined"
    )
    code, out = gate.cli("release", bad, "--by", "Dr. Who", "--reason", "reviewed: acceptable")
    assert code == 0, out
    seg = gate.seg(bad)
    assert (seg.disposition, seg.verdict) == ("forwarding", "fail")  # the verdict stays as recorded
    [row] = gate.sends()
    assert (row.sop_instance_uid, row.destination, row.state) == (bad, "pacs", "pending")
    assert Path(row.path) == gate.spool.absolute(gate.spool.relative_path(gate.study.study_instance_uid, bad))
    [event] = gate.audit()
    assert (event.kind, event.actor, event.detail, event.subject_uid) == (
        "release",
        "Dr. Who",
        "reviewed: acceptable",
        bad,
    )
    assert dispatch_due(gate.settings, gate.sessions) == 1
    assert peer.received == [bad]
    assert gate.seg(bad).disposition == "forwarded"


@pytest.mark.parametrize("state", ["incomplete", "error"])
def test_release_of_incomplete_or_error(gate: Gate, state: str) -> None:
    uid = gate.decided_seg(gate.study.good_seg_path, verdict=None, state=state, disposition="quarantined")
    release(gate.settings, gate.sessions, uid, by="carol", reason="sources checked by hand")
    assert gate.seg(uid).disposition == "forwarding"
    assert [r.state for r in gate.sends()] == ["pending"]


def test_release_after_refused_send_requeues_the_same_row(gate: Gate) -> None:
    uid = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="quarantined"
    )
    gate.send(uid, state="failed", attempts=1, last_status=0xA900)
    release(gate.settings, gate.sessions, uid, by="carol", reason="PACS fixed")
    [row] = gate.sends()
    assert (row.state, row.attempts) == ("pending", 0)


def test_release_refusals(gate: Gate) -> None:
    good = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="forwarding"
    )
    code, out = gate.cli("release", "1.2.3.999", "--by", "a", "--reason", "b")
    assert code == 2 and "no SEG 1.2.3.999" in out
    code, out = gate.cli("release", good, "--by", "a", "--reason", "b")
    assert code == 2 and "not quarantined" in out
    code, out = gate.cli("release", good, "--reason", "b")  # --by is required
    assert code == 2
    code, out = gate.cli("release", good, "--by", "a")  # --reason is required
    assert code == 2
    with pytest.raises(OperatorError, match="--reason"):
        release(gate.settings, gate.sessions, good, by="a", reason="  ")
    assert gate.sends() == [] and gate.audit() == []


# -- gate discard ------------------------------------------------------------------------------------
def test_discard_cancels_sends_and_deletes_only_the_seg_file(gate: Gate, peer: CountingPeer) -> None:
    images = [gate.store(p) for p in gate.study.image_paths]
    bad = gate.decided_seg(
        gate.study.bad_seg_path, verdict="fail", state="verified", disposition="quarantined"
    )
    gate.send(bad, uid="1.2.3.4", destination="reports", attempts=1, last_error="no association")
    seg_file = gate.spool.absolute(gate.spool.relative_path(gate.study.study_instance_uid, bad))
    assert seg_file.exists()

    code, out = gate.cli("discard", bad, "--by", "dave", "--reason", "wrong patient")
    assert code == 0, out
    assert gate.seg(bad).disposition == "discarded"
    assert [r.state for r in gate.sends()] == ["cancelled"]
    assert not seg_file.exists()
    for uid in images:  # source images stay: other SEGs may reference them
        assert gate.spool.absolute(gate.spool.relative_path(gate.study.study_instance_uid, uid)).exists()
    [event] = gate.audit()
    assert (event.kind, event.actor, event.subject_uid) == ("discard", "dave", bad)
    assert event.detail.startswith("wrong patient")
    assert dispatch_due(gate.settings, gate.sessions) == 0 and peer.received == []

    code, out = gate.cli("discard", bad, "--by", "dave", "--reason", "again")
    assert code == 2 and "already discarded" in out
    code, out = gate.cli("release", bad, "--by", "dave", "--reason", "oops")
    assert code == 2 and "not quarantined" in out
    code, out = gate.cli("outbox", "--json")
    assert json.loads(out) == []


def test_discard_refusals(gate: Gate) -> None:
    waiting = gate.decided_seg(gate.study.good_seg_path, verdict=None, state="waiting", disposition=None)
    forwarded = gate.decided_seg(
        gate.study.bad_seg_path, verdict="pass", state="verified", disposition="forwarded"
    )
    for uid, why in ((waiting, "still being"), (forwarded, "already forwarded"), ("1.2.3.999", "no SEG")):
        code, out = gate.cli("discard", uid, "--by", "a", "--reason", "b")
        assert code == 2 and why in out, out
    assert gate.audit() == []


def test_discard_while_the_send_is_on_the_wire_stays_cancelled(
    gate: Gate, peer: CountingPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route worker loaded the row before the operator cancelled it; settling must not undo that."""
    uid = gate.decided_seg(
        gate.study.good_seg_path, verdict="pass", state="verified", disposition="forwarding"
    )
    gate.send(uid)
    settings = gate.settings
    real_send = outbox_module.send_files

    def send_after_discard(paths, destination, **kwargs):  # type: ignore[no-untyped-def]
        peer.status = 0xA700  # transient: without the fix the row would be pending again
        discard(settings, gate.sessions, uid, by="erin", reason="duplicate study")
        return real_send(paths, destination, **kwargs)

    monkeypatch.setattr(outbox_module, "send_files", send_after_discard)
    dispatch_due(settings, gate.sessions)
    [row] = gate.sends()
    assert row.state == SendState.CANCELLED
    assert gate.seg(uid).disposition == "discarded"
