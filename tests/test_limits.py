"""Resource limits over real sockets: association cap, object size cap, a slow sender blocks nobody."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

from gate.config import Settings
from gate.net.receive import ReceiveContext
from gate.net.server import start_storage_scp
from gate.net.status import StoreStatus
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.spool import Spool
from gate.synth.study import StudyFiles, write_synthetic_study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("study"), seed=13, n_slices=3)


def _start(tmp_path: Path, **settings: object) -> Iterator[tuple[int, ReceiveContext]]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    ctx = ReceiveContext(
        spool=Spool(tmp_path / "spool"),
        sessions=session_factory(make_engine(url)),
        min_free_bytes=0,
        max_object_bytes=int(settings.pop("max_object_bytes", 2**31)),
    )
    server = start_storage_scp(
        Settings(port=0, bind_address="127.0.0.1", storage_dir=tmp_path, **settings),  # type: ignore[arg-type]
        ctx,
    )
    try:
        yield int(server.server_address[1]), ctx
    finally:
        server.shutdown()


def _associate(port: int, calling: str = "AISEG"):  # type: ignore[no-untyped-def]
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="QGATE")


def test_associations_beyond_the_limit_are_rejected_transiently(tmp_path: Path) -> None:
    for port, _ in _start(tmp_path, max_associations=2):
        held = [_associate(port), _associate(port)]
        assert all(a.is_established for a in held)
        third = _associate(port)
        assert third.is_rejected
        # PS3.8 9.3.4: rejected-transient (result 2, "local limit exceeded"): senders retry later.
        assert third.acceptor.primitive.result == 0x02
        for a in held:
            a.release()
        time.sleep(0.5)
        again = _associate(port)
        assert again.is_established
        again.release()


def test_object_above_the_size_limit_is_refused_out_of_resources(tmp_path: Path, study: StudyFiles) -> None:
    for port, _ in _start(tmp_path, max_object_bytes=10_000):
        assoc = _associate(port)
        assert assoc.is_established
        try:
            assert (
                int(assoc.send_c_store(dcmread(study.image_paths[0])).Status) == StoreStatus.OUT_OF_RESOURCES
            )
        finally:
            assoc.release()


def test_a_silent_sender_does_not_block_the_others(tmp_path: Path, study: StudyFiles) -> None:
    for port, _ in _start(tmp_path):
        idle = _associate(port, "SLOWPOKE")  # establishes, then says nothing
        assert idle.is_established
        t0 = time.monotonic()
        busy = _associate(port)
        assert busy.is_established
        try:
            statuses = [int(busy.send_c_store(dcmread(p)).Status) for p in study.image_paths]
        finally:
            busy.release()
        assert statuses == [StoreStatus.SUCCESS] * len(study.image_paths)
        assert time.monotonic() - t0 < 30, "the silent association held up the others"
        idle.release()
