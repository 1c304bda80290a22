"""The Storage SCP over real sockets: persist before Success, named refusals, duplicates once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]
from sqlalchemy import func, select

from gate.config import Settings
from gate.net.receive import ReceiveContext
from gate.net.server import start_storage_scp
from gate.net.status import StoreStatus
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import Instance, SegVerification
from gate.store.spool import Spool
from gate.synth.study import StudyFiles, write_synthetic_study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("study"), seed=11, n_slices=4)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[int, ReceiveContext]]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    ctx = ReceiveContext(
        spool=Spool(tmp_path / "spool"), sessions=session_factory(make_engine(url)), min_free_bytes=0
    )
    server = start_storage_scp(Settings(port=0, bind_address="127.0.0.1", storage_dir=tmp_path), ctx)
    try:
        yield int(server.server_address[1]), ctx
    finally:
        server.shutdown()


def _send(port: int, datasets, sop_classes=(MRImageStorage,), calling="AISEG"):  # type: ignore[no-untyped-def]
    from pynetdicom.sop_class import SegmentationStorage  # type: ignore[attr-defined]

    ae = AE(ae_title=calling)
    for c in (*sop_classes, SegmentationStorage):
        ae.add_requested_context(c)
    assoc = ae.associate("127.0.0.1", port, ae_title="QGATE")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_instances_and_seg_are_persisted_before_success(scp, study: StudyFiles) -> None:  # type: ignore[no-untyped-def]
    port, ctx = scp
    datasets = [dcmread(p) for p in [*study.image_paths, study.good_seg_path]]
    assert _send(port, datasets) == [StoreStatus.SUCCESS] * len(datasets)
    with ctx.sessions() as s:
        rows = {r.sop_instance_uid: r for r in s.scalars(select(Instance)).all()}
        seg_rows = s.scalars(select(SegVerification)).all()
    assert set(rows) == {str(ds.SOPInstanceUID) for ds in datasets}
    for ds in datasets:
        row = rows[str(ds.SOPInstanceUID)]
        on_disk = dcmread(ctx.spool.absolute(row.path))
        assert on_disk.SOPInstanceUID == ds.SOPInstanceUID and on_disk.PixelData == ds.PixelData
        assert row.calling_ae == "AISEG" and row.study_instance_uid == study.study_instance_uid
    assert [r.seg_sop_instance_uid for r in seg_rows] == [str(datasets[-1].SOPInstanceUID)]
    assert seg_rows[0].state == "waiting"


def test_same_instance_twice_is_stored_once(scp, study: StudyFiles) -> None:  # type: ignore[no-untyped-def]
    port, ctx = scp
    ds = dcmread(study.image_paths[0])
    assert _send(port, [ds, ds]) == [StoreStatus.SUCCESS, StoreStatus.SUCCESS]
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 1


def test_hostile_uid_is_refused_and_the_server_keeps_serving(scp, study: StudyFiles) -> None:  # type: ignore[no-untyped-def]
    port, ctx = scp
    bad = dcmread(study.image_paths[0])
    bad.SOPInstanceUID = "1.2.3/../../x"
    bad.file_meta.MediaStorageSOPInstanceUID = bad.SOPInstanceUID
    good = dcmread(study.image_paths[1])
    assert _send(port, [bad, good]) == [StoreStatus.CANNOT_UNDERSTAND, StoreStatus.SUCCESS]
    assert not any(p.name.startswith("x") for p in ctx.spool.root.rglob("*"))


def test_full_disk_watermark_answers_out_of_resources(scp, study: StudyFiles) -> None:  # type: ignore[no-untyped-def]
    port, ctx = scp
    ctx.min_free_bytes = ctx.spool.free_bytes() * 10  # a watermark we are certainly below
    assert _send(port, [dcmread(study.image_paths[0])]) == [StoreStatus.OUT_OF_RESOURCES]
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 0
