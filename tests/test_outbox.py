"""The outbox against a real pynetdicom SCP: delivery, backoff on transient failure, quarantine."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from gate.config import Destination, Destinations, RetryPolicy, Settings
from gate.route.outbox import dispatch_due, enqueue
from gate.store.db import as_utc, make_engine, session_factory, upgrade
from gate.store.models import Instance, OutboxSend, SegVerification, utcnow
from gate.synth.study import StudyFiles, write_synthetic_study
from tests.conftest import CountingPeer, free_port


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("study"), seed=5, n_slices=3)


def _setup(tmp_path: Path, study: StudyFiles, pacs_port: int):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    settings = Settings(
        storage_dir=tmp_path,
        destinations=Destinations(pacs=Destination(ae_title="PACS", host="127.0.0.1", port=pacs_port)),
        retry=RetryPolicy(initial_seconds=10, factor=2, max_seconds=60, max_attempts=3),
    )
    seg = dcmread(study.good_seg_path, stop_before_pixels=True)
    uid = str(seg.SOPInstanceUID)
    with sessions.begin() as s:
        s.add(
            Instance(
                sop_instance_uid=uid,
                sop_class_uid=str(seg.SOPClassUID),
                study_instance_uid=str(seg.StudyInstanceUID),
                series_instance_uid=str(seg.SeriesInstanceUID),
                modality="SEG",
                transfer_syntax_uid=str(seg.file_meta.TransferSyntaxUID),
                path="x",
                size_bytes=1,
                calling_ae="AI",
                is_seg=True,
            )
        )
        s.add(
            SegVerification(
                seg_sop_instance_uid=uid,
                study_instance_uid=str(seg.StudyInstanceUID),
                state="verified",
                verdict="pass",
                disposition="forwarding",
            )
        )
        enqueue(
            s,
            seg_uid=uid,
            sop_instance_uid=uid,
            sop_class_uid=str(seg.SOPClassUID),
            path=study.good_seg_path,
            destination="pacs",
        )
        enqueue(
            s,
            seg_uid=uid,
            sop_instance_uid=uid,
            sop_class_uid=str(seg.SOPClassUID),
            path=study.good_seg_path,
            destination="pacs",
        )  # idempotent
    return settings, sessions, uid


def _row(sessions) -> OutboxSend:  # type: ignore[no-untyped-def]
    with sessions() as s:
        rows = s.scalars(select(OutboxSend)).all()
        assert len(rows) == 1
        return rows[0]


def test_delivered_once_and_seg_marked_forwarded(
    tmp_path: Path, study: StudyFiles, peer: CountingPeer
) -> None:
    settings, sessions, uid = _setup(tmp_path, study, peer.port)
    assert dispatch_due(settings, sessions) == 1
    assert dispatch_due(settings, sessions) == 0  # nothing left to send
    assert peer.received == [uid]
    row = _row(sessions)
    assert (row.state, row.attempts, row.last_status) == ("sent", 1, 0)
    with sessions() as s:
        assert s.scalar(select(SegVerification)).disposition == "forwarded"


def test_peer_down_backs_off_then_delivers(tmp_path: Path, study: StudyFiles, peer: CountingPeer) -> None:
    down_port = free_port()
    settings, sessions, uid = _setup(tmp_path, study, down_port)
    t0 = utcnow()
    assert dispatch_due(settings, sessions, now=t0) == 0
    row = _row(sessions)
    assert row.state == "pending" and row.attempts == 1 and row.last_status is None
    assert as_utc(row.next_attempt_at) == t0 + timedelta(seconds=10)
    assert dispatch_due(settings, sessions, now=t0 + timedelta(seconds=5)) == 0  # not yet due
    assert _row(sessions).attempts == 1
    dispatch_due(settings, sessions, now=t0 + timedelta(seconds=11))
    row = _row(sessions)
    assert row.attempts == 2 and as_utc(row.next_attempt_at) == t0 + timedelta(seconds=31)
    # The PACS comes back (same destination name, now the live peer).
    settings.destinations.pacs = Destination(ae_title="PACS", host="127.0.0.1", port=peer.port)
    assert dispatch_due(settings, sessions, now=t0 + timedelta(seconds=40)) == 1
    assert _row(sessions).state == "sent" and peer.received == [uid]


def test_out_of_resources_is_retried(tmp_path: Path, study: StudyFiles, peer: CountingPeer) -> None:
    settings, sessions, _ = _setup(tmp_path, study, peer.port)
    peer.status = 0xA700
    dispatch_due(settings, sessions)
    row = _row(sessions)
    assert (row.state, row.last_status) == ("pending", 0xA700)


def test_permanent_refusal_quarantines_with_status(
    tmp_path: Path, study: StudyFiles, peer: CountingPeer
) -> None:
    settings, sessions, _ = _setup(tmp_path, study, peer.port)
    peer.status = 0xA900
    assert dispatch_due(settings, sessions) == 1
    row = _row(sessions)
    assert (row.state, row.last_status) == ("failed", 0xA900)
    with sessions() as s:
        seg = s.scalar(select(SegVerification))
        assert seg.disposition == "quarantined" and "0xA900" in seg.reason


def test_gives_up_after_max_attempts(tmp_path: Path, study: StudyFiles) -> None:
    settings, sessions, _ = _setup(tmp_path, study, free_port())
    t = utcnow()
    for _ in range(3):
        dispatch_due(settings, sessions, now=t)
        t += timedelta(seconds=120)
    row = _row(sessions)
    assert row.state == "failed" and row.attempts == 3
