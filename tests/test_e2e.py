"""End to end with real peers: DCMTK storescu → gate serve → Orthanc (PACS and report destination)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select

from gate.config import Destination
from gate.net.send import send_files
from gate.store.db import make_engine, session_factory
from gate.store.models import Instance, OutboxSend, SegState, SegVerification, SendState
from gate.synth.study import write_synthetic_study
from tests.conftest import (
    DCMTK_STORESCU,
    drop_postgres,
    free_port,
    postgres_url,
    start_gate,
    stop_gate,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e


def _run_flow(tmp_path: Path, orthanc, database_url: str) -> None:  # type: ignore[no-untyped-def]
    study = write_synthetic_study(tmp_path / "study", seed=7)
    port = free_port()
    storage = tmp_path / "var"
    config = write_config(
        tmp_path / "config.yaml",
        port=port,
        storage=storage,
        database_url=database_url,
        pacs_port=orthanc.dicom_port,
    )
    gate = start_gate(config, port, storage, database_url, tmp_path / "gate.log")
    try:
        # SEGs first, then the images: assembly must not depend on the order of arrival.
        files = [study.bad_seg_path, study.good_seg_path, *study.image_paths]
        done = subprocess.run(
            [
                DCMTK_STORESCU,
                "-R",
                "-aet",
                "AISEG",
                "-aec",
                "QGATE",
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

        good_uid = str(dcmread(study.good_seg_path, stop_before_pixels=True).SOPInstanceUID)
        bad_uid = str(dcmread(study.bad_seg_path, stop_before_pixels=True).SOPInstanceUID)
        sessions = session_factory(make_engine(database_url))

        def decided() -> bool:
            with sessions() as s:
                rows = s.scalars(select(SegVerification)).all()
                return len(rows) == 2 and all(r.state != SegState.WAITING for r in rows)

        wait_until(decided, timeout=180, what="both SEG verdicts\n")

        def delivered() -> bool:
            with sessions() as s:
                rows = s.scalars(select(OutboxSend)).all()
                return len(rows) == 2 and all(r.state == SendState.SENT for r in rows)

        wait_until(delivered, timeout=60, what="both outbox sends")

        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(Instance)) == len(study.image_paths) + 2
            good = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == good_uid))
            bad = s.scalar(select(SegVerification).where(SegVerification.seg_sop_instance_uid == bad_uid))
            assert good is not None and bad is not None
            assert (good.state, good.verdict, good.disposition) == ("verified", "pass", "forwarded"), (
                good.reason
            )
            assert (bad.state, bad.verdict, bad.disposition) == ("verified", "fail", "quarantined")
            assert {x.label for x in good.segments} == set(study.segment_labels)
            assert all(x.verdict == "pass" for x in good.segments)
            failing = [x.label for x in bad.segments if x.verdict == "fail"]
            assert failing == [study.bad_segment_label]
            assert good.model_sha256 and len(good.model_sha256) == 64
            assert good.timings and good.timings["verify"] > 0
            sr_uid = bad.sr_sop_instance_uid
            assert sr_uid

        assert orthanc.has_instance(good_uid)
        assert not orthanc.has_instance(bad_uid)
        assert orthanc.has_instance(sr_uid)
        # The SR that reached the PACS names the bad SEG as evidence, in the same study.
        sr = dcmread(storage / "generated" / f"{sr_uid}.dcm")
        assert sr.StudyInstanceUID == study.study_instance_uid
        evidence = {
            inst.ReferencedSOPInstanceUID
            for item in sr.CurrentRequestedProcedureEvidenceSequence
            for series in item.ReferencedSeriesSequence
            for inst in series.ReferencedSOPSequence
        }
        assert bad_uid in evidence
        assert orthanc.instance_tags(sr_uid)["StudyInstanceUID"] == study.study_instance_uid
    finally:
        stop_gate(gate)


def test_storescu_gate_orthanc_sqlite(tmp_path: Path, orthanc) -> None:  # type: ignore[no-untyped-def]
    _run_flow(tmp_path, orthanc, f"sqlite:///{tmp_path / 'gate.db'}")


@pytest.mark.postgres
def test_storescu_gate_orthanc_postgres(tmp_path: Path, orthanc) -> None:  # type: ignore[no-untyped-def]
    url = postgres_url()
    try:
        _run_flow(tmp_path, orthanc, url)
    finally:
        drop_postgres(url)


def test_seg_whose_sources_never_arrive_is_incomplete(tmp_path: Path) -> None:
    study = write_synthetic_study(tmp_path / "study", seed=3, n_slices=6)
    port = free_port()
    storage = tmp_path / "var"
    db = f"sqlite:///{tmp_path / 'gate.db'}"
    # No PACS runs on this port: nothing may be sent anyway.
    config = write_config(
        tmp_path / "config.yaml",
        port=port,
        storage=storage,
        database_url=db,
        pacs_port=free_port(),
        assembly_wait=2.0,
    )
    gate = start_gate(config, port, storage, db, tmp_path / "gate.log")
    try:
        sent, withheld = study.image_paths[:3], study.image_paths[3:]
        outcomes = send_files(
            [study.good_seg_path, *sent],
            Destination(ae_title="QGATE", host="127.0.0.1", port=port),
            calling_ae="AISEG",
        )
        assert all(o.delivered for o in outcomes)
        withheld_uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in withheld}
        sessions = session_factory(make_engine(db))

        def incomplete() -> SegVerification | None:
            with sessions() as s:
                row = s.scalar(select(SegVerification))
                return row if row is not None and row.state == SegState.INCOMPLETE else None

        row = wait_until(incomplete, timeout=60, what="the SEG to be recorded incomplete")
        assert set(row.missing_uids) == withheld_uids
        assert row.disposition == "quarantined"
        assert row.verdict is None
        report = Path(row.report_path).read_text()
        for uid in withheld_uids:
            assert uid in report
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(OutboxSend)) == 0
    finally:
        stop_gate(gate)
