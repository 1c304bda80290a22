"""Access control at A-ASSOCIATE over real sockets: allow-list, host check, called AE, audit rows."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread, examples
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from gate.config import AllowedPeer, Settings
from gate.net.access import AccessPolicy, AssociateResult, RejectSource, ServiceUserReason
from gate.net.receive import ReceiveContext
from gate.net.server import start_storage_scp
from gate.net.status import StoreStatus
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import AuditEvent, AuditKind
from gate.store.spool import Spool
from tests.conftest import wait_until

DCMTK_ECHOSCU = "/usr/bin/echoscu"  # by path: pynetdicom's echoscu script shadows DCMTK's in a venv
GATE_AE = "QGATE"
HOST_BOUND_AE = "AISEG"  # listed for 127.0.0.1 only
ANYWHERE_AE = "ROUTER"  # listed without a host
OTHER_LOOPBACK = "127.0.0.2"
AUDIT_WAIT_SECONDS = 10.0
ALLOWED = [AllowedPeer(ae_title=HOST_BOUND_AE, host="127.0.0.1"), AllowedPeer(ae_title=ANYWHERE_AE)]


@dataclass
class Scp:
    port: int
    sessions: sessionmaker[Session]
    db_path: Path

    def audit(self, expect: int = 1) -> list[AuditEvent]:
        """The audit rows, once ``expect`` are there: pynetdicom fires EVT_REJECTED after sending
        the A-ASSOCIATE-RJ, so the peer may learn of a rejection before its row is committed."""

        def rows() -> list[AuditEvent]:
            with self.sessions() as s:
                return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all())

        wait_until(lambda: len(rows()) >= expect, timeout=AUDIT_WAIT_SECONDS, what=f"{expect} audit rows")
        return rows()


def _start(tmp_path: Path, sessions_for: str = "default") -> Iterator[Scp]:
    db_path = tmp_path / "gate.db"
    url = f"sqlite:///{db_path}"
    upgrade(url)
    if sessions_for == "short-lock-timeout":
        # A busy timeout short enough that a locked database fails the audit write within the test.
        sessions = sessionmaker(create_engine(url, connect_args={"timeout": 0.2}), expire_on_commit=False)
    else:
        sessions = session_factory(make_engine(url))
    ctx = ReceiveContext(spool=Spool(tmp_path / "spool"), sessions=sessions, min_free_bytes=0)
    settings = Settings(
        ae_title=GATE_AE, port=0, bind_address="127.0.0.1", storage_dir=tmp_path, allowed_callers=ALLOWED
    )
    server = start_storage_scp(settings, ctx)
    try:
        yield Scp(int(server.server_address[1]), sessions, db_path)
    finally:
        server.shutdown()


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[Scp]:
    yield from _start(tmp_path)


@pytest.fixture
def ct() -> Dataset:
    return dcmread(examples.get_path("ct"))


def _associate(
    port: int, calling: str, *, called: str = GATE_AE, bind_host: str = "127.0.0.1"
) -> Association:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(bind_host, 0))


def _assert_rejected(assoc: Association, reason: ServiceUserReason) -> None:
    assert assoc.is_rejected and not assoc.is_established
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (
        AssociateResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_USER,
        reason,
    )


def test_listed_caller_from_its_host_associates_and_stores(scp: Scp, ct: Dataset) -> None:
    assoc = _associate(scp.port, HOST_BOUND_AE)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(ct).Status) == StoreStatus.SUCCESS
    finally:
        assoc.release()
    [event] = scp.audit()
    assert event.kind == AuditKind.ASSOCIATION_ACCEPTED
    assert (event.actor, event.peer_host) == (HOST_BOUND_AE, "127.0.0.1")
    assert "listed for host 127.0.0.1" in (event.detail or "")


def test_caller_listed_without_host_may_come_from_anywhere(scp: Scp) -> None:
    assoc = _associate(scp.port, ANYWHERE_AE, bind_host=OTHER_LOOPBACK)
    assert assoc.is_established
    assoc.release()
    [event] = scp.audit()
    assert (event.kind, event.actor, event.peer_host) == (
        AuditKind.ASSOCIATION_ACCEPTED,
        ANYWHERE_AE,
        OTHER_LOOPBACK,
    )


def test_unlisted_calling_ae_is_rejected_and_audited(scp: Scp) -> None:
    _assert_rejected(_associate(scp.port, "INTRUDER"), ServiceUserReason.CALLING_AE_TITLE_NOT_RECOGNISED)
    [event] = scp.audit()
    assert (event.kind, event.actor, event.peer_host) == (
        AuditKind.ASSOCIATION_REJECTED,
        "INTRUDER",
        "127.0.0.1",
    )
    assert "calling AE title not recognised" in (event.detail or "")
    assert "not in allowed_callers" in (event.detail or "")


def test_listed_caller_from_the_wrong_host_is_rejected(scp: Scp) -> None:
    assoc = _associate(scp.port, HOST_BOUND_AE, bind_host=OTHER_LOOPBACK)
    _assert_rejected(assoc, ServiceUserReason.CALLING_AE_TITLE_NOT_RECOGNISED)
    [event] = scp.audit()
    assert (event.kind, event.actor, event.peer_host) == (
        AuditKind.ASSOCIATION_REJECTED,
        HOST_BOUND_AE,
        OTHER_LOOPBACK,
    )
    assert f"not allowed from host {OTHER_LOOPBACK}" in (event.detail or "")


def test_wrong_called_ae_is_rejected_and_audited(scp: Scp) -> None:
    assoc = _associate(scp.port, HOST_BOUND_AE, called="NOTTHEGATE")
    _assert_rejected(assoc, ServiceUserReason.CALLED_AE_TITLE_NOT_RECOGNISED)
    [event] = scp.audit()
    assert (event.kind, event.actor) == (AuditKind.ASSOCIATION_REJECTED, HOST_BOUND_AE)
    assert "called AE title not recognised" in (event.detail or "")
    assert "NOTTHEGATE" in (event.detail or "")


def test_dcmtk_echoscu_with_an_unlisted_ae_is_rejected(scp: Scp) -> None:
    cmd = [DCMTK_ECHOSCU, "-aet", "INTRUDER", "-aec", GATE_AE, "127.0.0.1", str(scp.port)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "calling ae title not recognized" in (done.stdout + done.stderr).lower()
    ok = [DCMTK_ECHOSCU, "-aet", ANYWHERE_AE, "-aec", GATE_AE, "127.0.0.1", str(scp.port)]
    assert subprocess.run(ok, capture_output=True, timeout=30).returncode == 0
    kinds = [(e.kind, e.actor) for e in scp.audit(expect=2)]
    assert kinds == [
        (AuditKind.ASSOCIATION_REJECTED, "INTRUDER"),
        (AuditKind.ASSOCIATION_ACCEPTED, ANYWHERE_AE),
    ]


def test_locked_database_does_not_break_the_association(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for scp in _start(tmp_path, sessions_for="short-lock-timeout"):
        lock = sqlite3.connect(scp.db_path)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            assoc = _associate(scp.port, ANYWHERE_AE)
            assert assoc.is_established
            assert int(assoc.send_c_echo().Status) == StoreStatus.SUCCESS
            assoc.release()
        finally:
            lock.rollback()
            lock.close()
        assert "NOT recorded (database error OperationalError)" in caplog.text
        assert scp.audit(expect=0) == []  # the lock is gone: later associations are audited again
        assoc = _associate(scp.port, ANYWHERE_AE)
        assert assoc.is_established
        assoc.release()
        assert [e.kind for e in scp.audit()] == [AuditKind.ASSOCIATION_ACCEPTED]


@pytest.mark.parametrize(
    ("host", "peer", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "::ffff:127.0.0.1", True),  # IPv4 peer seen by a dual-stack listener
        ("127.0.0.0/30", "127.0.0.2", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("localhost", "127.0.0.1", True),
        ("no-such-host.invalid", "127.0.0.1", False),
    ],
)
def test_policy_host_forms(host: str, peer: str, allowed: bool) -> None:
    policy = AccessPolicy([AllowedPeer(ae_title="AISEG", host=host)])
    assert policy.decide("AISEG", peer).allowed is allowed
    assert policy.decide("OTHER", peer).allowed is False


def test_empty_allow_list_admits_any_caller() -> None:
    assert AccessPolicy([]).decide("ANYONE", "10.1.2.3").allowed
