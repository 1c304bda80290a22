"""Crash safety: kill -9 the gate mid-stream, restart it, and lose nothing that was acknowledged.

The sender behaves as a real one: it keeps every instance the gate did not answer with Success and
sends those again once the gate is back. Nothing may be missing afterwards, nothing verified twice,
nothing forwarded twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import func, select

from gate.store.db import make_engine, session_factory
from gate.store.models import Instance, OutboxSend, SegState, SegVerification
from gate.store.spool import TEMP_PREFIX, TEMP_SUFFIX, Spool
from gate.synth.study import write_synthetic_study
from tests.conftest import RunningGate, free_port, start_gate, stop_gate, wait_until, write_config

N_SLICES = 6
KILL_AFTER = 20  # acknowledged instances: past the first study (8), inside the second


@dataclass
class Stream:
    """What a sender knows after streaming: which instances the gate acknowledged with Success."""

    paths: list[Path]
    acked: dict[Path, str] = field(default_factory=dict)  # path -> SOP Instance UID
    reached: threading.Event = field(default_factory=threading.Event)
    kill_after: int = 0

    def send(self, port: int) -> None:
        """C-STORE every path not yet acknowledged over one association, stopping when it breaks."""
        ae = AE(ae_title="AISEG")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        datasets = [(p, dcmread(p)) for p in self.paths if p not in self.acked]
        for sop_class in {str(ds.SOPClassUID) for _, ds in datasets}:
            ae.add_requested_context(sop_class)
        assoc = ae.associate("127.0.0.1", port, ae_title="QGATE")
        if not assoc.is_established:
            return
        try:
            for path, ds in datasets:
                try:
                    rsp = assoc.send_c_store(ds)
                except (RuntimeError, ValueError):  # association gone
                    return
                if rsp and int(rsp.get("Status", -1)) == 0x0000:
                    self.acked[path] = str(ds.SOPInstanceUID)
                    if self.kill_after and len(self.acked) >= self.kill_after:
                        self.reached.set()
                elif not assoc.is_established:
                    return
        finally:
            if assoc.is_established:
                assoc.release()


def _kill(gate: RunningGate) -> None:
    os.kill(gate.proc.pid, signal.SIGKILL)
    gate.proc.wait(10)


@pytest.mark.e2e
def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path, orthanc) -> None:  # type: ignore[no-untyped-def]
    studies = [write_synthetic_study(tmp_path / f"study{s}", seed=s, n_slices=N_SLICES) for s in (41, 42, 43)]
    segs = {s.good_seg_path for s in studies} | {s.bad_seg_path for s in studies}
    # Study 42 sends its SEGs before its images: assembly must not depend on the order of arrival.
    paths = [
        *studies[0].image_paths,
        studies[0].good_seg_path,
        studies[0].bad_seg_path,
        studies[1].good_seg_path,
        studies[1].bad_seg_path,
        *studies[1].image_paths,
        *studies[2].image_paths,
        studies[2].good_seg_path,
        studies[2].bad_seg_path,
    ]
    port, storage, db = free_port(), tmp_path / "var", f"sqlite:///{tmp_path / 'gate.db'}"
    config = write_config(
        tmp_path / "config.yaml", port=port, storage=storage, database_url=db, pacs_port=orthanc.dicom_port
    )
    gate = start_gate(config, port, storage, db, tmp_path / "gate.log")
    stream = Stream(paths, kill_after=KILL_AFTER)
    try:
        sender = threading.Thread(target=stream.send, args=(port,), daemon=True)
        sender.start()
        assert stream.reached.wait(60), f"only {len(stream.acked)} instances acknowledged"
        _kill(gate)  # while the next C-STOREs are on the wire and the first study is being verified
        sender.join(30)
        assert not sender.is_alive()
        acked_before = dict(stream.acked)
        assert KILL_AFTER <= len(acked_before) < len(paths), "the kill did not land mid-stream"

        # A half-written temporary file from the killed process, as a kill inside a write leaves.
        spool = Spool(storage / "spool")
        stale = spool.root / studies[2].study_instance_uid / f"{TEMP_PREFIX}killed{TEMP_SUFFIX}"
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"DICM partial")
        os.utime(stale, (time.time() - 60, time.time() - 60))

        gate = start_gate(config, port, storage, db, tmp_path / "gate.log")
        stream.send(port)  # what the sender did not get Success for, again
        assert len(stream.acked) == len(paths), "the restarted gate did not acknowledge everything"

        sessions = session_factory(make_engine(db))
        with sessions() as s:
            stored = {i.sop_instance_uid: i for i in s.scalars(select(Instance)).all()}
        for uid in stream.acked.values():
            assert uid in stored, f"acknowledged {uid} has no instance row"
            on_disk = dcmread(spool.absolute(stored[uid].path))
            assert on_disk.SOPInstanceUID == uid
        assert len(stored) == len(paths)

        seg_uids = {stream.acked[p] for p in segs}

        def decided() -> list[SegVerification] | None:
            with sessions() as s:
                rows = s.scalars(select(SegVerification)).all()
            return rows if len(rows) == len(segs) and all(r.state != SegState.WAITING for r in rows) else None

        rows = wait_until(decided, timeout=80, interval=0.3, what="every SEG verified")
        assert {r.seg_sop_instance_uid for r in rows} == seg_uids  # one row per SEG, no more
        assert all(r.state == SegState.VERIFIED and r.verdict in ("pass", "fail") for r in rows), [
            (r.seg_sop_instance_uid, r.state, r.reason) for r in rows
        ]

        def delivered() -> list[OutboxSend] | None:
            with sessions() as s:
                sends = s.scalars(select(OutboxSend)).all()
            return sends if len(sends) == len(segs) and all(r.state == "sent" for r in sends) else None

        wait_until(delivered, timeout=30, interval=0.3, what="every send delivered")
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(SegVerification)) == len(segs)
        for row in rows:
            if row.verdict == "pass":
                assert orthanc.has_instance(row.seg_sop_instance_uid)
            else:
                assert not orthanc.has_instance(row.seg_sop_instance_uid)
                assert orthanc.has_instance(row.sr_sop_instance_uid)
        # Orthanc stores an instance once; one SEG or one SR per SEG, and no source image, reached it.
        assert orthanc.instance_count() == len(segs)

        leftovers = [p for p in spool.root.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")]
        assert leftovers == [], (
            "stale temporary files survived the restart: Service.start must call "
            "Spool.remove_stale_temporaries() before the Storage SCP starts"
        )
    finally:
        stop_gate(gate)


class _ExplodingVerifier:
    """Stands in for a verifier that hits a bug on every SEG: records who it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def verify(self, inp):  # type: ignore[no-untyped-def]
        self.asked.append(inp.seg_sop_instance_uid)
        raise ZeroDivisionError("an unforeseen bug")


def test_one_failing_seg_does_not_starve_the_others(tmp_path: Path) -> None:
    from gate.config import Settings
    from gate.store.db import upgrade
    from gate.worker import Pipeline

    study = write_synthetic_study(tmp_path / "study", seed=44, n_slices=3)
    db = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(db)
    sessions = session_factory(make_engine(db))
    spool = Spool(tmp_path / "var" / "spool")
    seg_paths = [study.bad_seg_path, study.good_seg_path]
    with sessions.begin() as s:
        for path in [*study.image_paths, *seg_paths]:
            ds = dcmread(path)
            uid = str(ds.SOPInstanceUID)
            rel = spool.write(study.study_instance_uid, uid, path.read_bytes())
            s.add(
                Instance(
                    sop_instance_uid=uid,
                    sop_class_uid=str(ds.SOPClassUID),
                    study_instance_uid=study.study_instance_uid,
                    series_instance_uid=str(ds.SeriesInstanceUID),
                    transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                    path=rel.as_posix(),
                    size_bytes=path.stat().st_size,
                    calling_ae="AISEG",
                    is_seg=path in seg_paths,
                )
            )
            if path in seg_paths:
                s.add(SegVerification(seg_sop_instance_uid=uid, study_instance_uid=study.study_instance_uid))
    verifier = _ExplodingVerifier()
    pipeline = Pipeline(
        settings=Settings(storage_dir=tmp_path / "var"),
        sessions=sessions,
        spool=spool,
        verifier_factory=lambda: verifier,  # type: ignore[arg-type,return-value]
    )
    pipeline.assemble_once()
    assert verifier.asked == [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in seg_paths]
    with sessions() as s:  # both stay waiting, to be retried: nothing is lost
        assert [r.state for r in s.scalars(select(SegVerification)).all()] == ["waiting", "waiting"]
