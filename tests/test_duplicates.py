"""Duplicates: the same SEG sent again is stored, verified and forwarded once; a corrected SEG (new SOP
Instance UID, same sources) is a new SEG with its own verification.

The PACS is a pynetdicom SCP that counts every C-STORE it receives, so a second forward shows even
where a real PACS would silently store the instance once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gate.config import Destination
from gate.net.send import SendOutcome, send_files
from gate.store.db import make_engine, session_factory
from gate.store.models import Instance, OutboxSend, SegState, SegVerification
from gate.synth.study import write_synthetic_study
from tests.conftest import (
    CountingPeer,
    RunningGate,
    free_port,
    start_gate,
    stop_gate,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

N_SLICES = 6


@pytest.fixture
def gate(tmp_path: Path, peer: CountingPeer) -> Iterator[RunningGate]:
    port, storage, db = free_port(), tmp_path / "var", f"sqlite:///{tmp_path / 'gate.db'}"
    config = write_config(
        tmp_path / "config.yaml", port=port, storage=storage, database_url=db, pacs_port=peer.port
    )
    running = start_gate(config, port, storage, db, tmp_path / "gate.log")
    yield running
    stop_gate(running)


def _send(gate: RunningGate, paths: list[Path]) -> list[SendOutcome]:
    """One association per call, as a separate sender would open."""
    outcomes = send_files(
        paths, Destination(ae_title="QGATE", host="127.0.0.1", port=gate.port), calling_ae="AISEG"
    )
    assert all(o.delivered for o in outcomes), [o for o in outcomes if not o.delivered]
    return outcomes


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _count(sessions: sessionmaker[Session], model, *where) -> int:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _decided(sessions: sessionmaker[Session], uid: str) -> SegVerification:
    def done() -> SegVerification | None:
        with sessions() as s:
            row = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == uid))
        return row if row is not None and row.state != SegState.WAITING else None

    return wait_until(done, timeout=60, interval=0.3, what=f"the verdict on {uid}")


def _settled(sessions: sessionmaker[Session]) -> None:
    def done() -> bool:
        with sessions() as s:
            return all(r.state == "sent" for r in s.scalars(select(OutboxSend)).all())

    wait_until(done, timeout=30, interval=0.3, what="the outbox to settle")


def test_same_seg_twice_is_stored_verified_and_forwarded_once(
    tmp_path: Path, gate: RunningGate, peer: CountingPeer
) -> None:
    study = write_synthetic_study(tmp_path / "study", seed=51, n_slices=N_SLICES)
    good, bad = _uid(study.good_seg_path), _uid(study.bad_seg_path)
    sessions = session_factory(make_engine(gate.database_url))

    _send(gate, [*study.image_paths, study.good_seg_path])
    _send(gate, [study.good_seg_path])  # again, on a second association, while it is being verified
    # Two senders at the same moment: both get Success, one of them stores it.
    threads = [threading.Thread(target=_send, args=(gate, [study.bad_seg_path])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    rows = {uid: _decided(sessions, uid) for uid in (good, bad)}
    _settled(sessions)
    _send(gate, [study.good_seg_path, study.bad_seg_path])  # and again after it was forwarded
    time.sleep(1.5)  # several worker polls: long enough for a second verification or send to start
    _settled(sessions)

    for uid in (good, bad):
        assert _count(sessions, Instance, Instance.sop_instance_uid == uid) == 1
        assert _count(sessions, SegVerification, SegVerification.seg_sop_instance_uid == uid) == 1
        assert _count(sessions, OutboxSend, OutboxSend.seg_sop_instance_uid == uid) == 1
    assert _count(sessions, Instance) == len(study.image_paths) + 2
    for uid, row in rows.items():
        assert row.state == SegState.VERIFIED
        assert peer.count(uid) == (1 if row.verdict == "pass" else 0)
        if row.verdict == "fail":
            assert peer.count(row.sr_sop_instance_uid) == 1
    assert len(peer.received) == 2, peer.received  # one SEG or one SR per SEG, nothing else


def test_corrected_seg_gets_its_own_verification(
    tmp_path: Path, gate: RunningGate, peer: CountingPeer
) -> None:
    """The engine's first SEG fails; it sends a corrected one (new SOP Instance UID, same sources)."""
    study = write_synthetic_study(tmp_path / "study", seed=52, n_slices=N_SLICES)
    first, corrected = _uid(study.bad_seg_path), _uid(study.good_seg_path)
    sessions = session_factory(make_engine(gate.database_url))

    _send(gate, [*study.image_paths, study.bad_seg_path])
    _decided(sessions, first)
    _settled(sessions)
    before = _decided(sessions, first)  # as routed
    _send(gate, [study.good_seg_path])  # the sources are already stored: nothing is sent twice
    _decided(sessions, corrected)
    _settled(sessions)
    after = _decided(sessions, corrected)  # as routed

    # Each SEG is routed by its own verdict (the shipped model fails the first and passes the
    # correction; whether it does is test_e2e's concern, not this test's).
    for row in (before, after):
        assert row.state == SegState.VERIFIED and row.verdict in ("pass", "fail"), row.reason
        assert row.disposition == ("forwarded" if row.verdict == "pass" else "quarantined")
        assert peer.count(row.seg_sop_instance_uid) == (1 if row.verdict == "pass" else 0)
    assert after.id != before.id
    assert after.referenced_uids == before.referenced_uids  # same sources
    with sessions() as s:
        again = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == first))
    assert again is not None  # the first SEG's record is untouched by the correction
    assert (again.verdict, again.disposition, again.score, again.decided_at) == (
        before.verdict,
        before.disposition,
        before.score,
        before.decided_at,
    )
    assert _count(sessions, Instance) == len(study.image_paths) + 2
