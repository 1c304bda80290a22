"""TLS on real sockets (PS3.15 B.9): mutual TLS on the SCP, verified TLS towards destinations.

Certificates are made per test module with Debian's openssl CLI: a CA, a server certificate for
IP 127.0.0.1, a client certificate, and a second, unrelated CA.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread, examples
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from gate.config import Destination, Settings, TlsClient, TlsServer
from gate.net.receive import ReceiveContext
from gate.net.send import echo, send_files
from gate.net.server import start_storage_scp
from gate.net.status import StoreStatus
from gate.net.tls import MIN_TLS_VERSION, client_context, server_context
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.models import AuditEvent, AuditKind
from gate.store.spool import Spool
from tests.conftest import wait_until

OPENSSL = "/usr/bin/openssl"
LOOPBACK = "127.0.0.1"
CERT_DAYS = "2"
GATE_AE = "QGATE"
SENDER_AE = "AISEG"
DEST_AE = "PACS"
CLIENT_CN = "aiseg-engine"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", CERT_DAYS, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _make_leaf(d: Path, name: str, cn: str, extensions: str) -> None:
    (d / f"{name}.ext").write_text(
        extensions + "\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", CERT_DAYS, "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", LOOPBACK, f"subjectAltName=IP:{LOOPBACK}\nextendedKeyUsage=serverAuth")
    _make_leaf(d, "client", CLIENT_CN, "extendedKeyUsage=clientAuth")
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other-ca.pem",
    )


@pytest.fixture
def ct_path(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    dcmread(examples.get_path("ct")).save_as(path)
    return path


@dataclass
class TlsGate:
    port: int
    ctx: ReceiveContext


@pytest.fixture
def tls_gate(tmp_path: Path, pki: Pki) -> Iterator[TlsGate]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    upgrade(url)
    ctx = ReceiveContext(
        spool=Spool(tmp_path / "spool"), sessions=session_factory(make_engine(url)), min_free_bytes=0
    )
    settings = Settings(
        ae_title=GATE_AE,
        port=0,
        bind_address=LOOPBACK,
        storage_dir=tmp_path,
        tls=TlsServer(cert_file=pki.server_cert, key_file=pki.server_key, ca_file=pki.ca),
        network_timeout_seconds=10,
    )
    server = start_storage_scp(settings, ctx)
    try:
        yield TlsGate(int(server.server_address[1]), ctx)
    finally:
        server.shutdown()


def _associate(port: int, tls_args: tuple[ssl.SSLContext, str] | None) -> Association:
    ae = AE(ae_title=SENDER_AE)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 10
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    return ae.associate(LOOPBACK, port, ae_title=GATE_AE, tls_args=tls_args)


def test_sender_with_client_certificate_stores(tls_gate: TlsGate, pki: Pki, ct_path: Path) -> None:
    tls = TlsClient(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assoc = _associate(tls_gate.port, (client_context(tls), LOOPBACK))
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(dcmread(ct_path)).Status) == StoreStatus.SUCCESS
    finally:
        assoc.release()
    with tls_gate.ctx.sessions() as s:
        event = s.scalars(select(AuditEvent)).one()
    assert event.kind == AuditKind.ASSOCIATION_ACCEPTED and event.actor == SENDER_AE
    assert f"TLS client certificate CN={CLIENT_CN}" in (event.detail or "")


def test_sender_without_client_certificate_cannot_associate(tls_gate: TlsGate, pki: Pki) -> None:
    assoc = _associate(tls_gate.port, (client_context(TlsClient(ca_file=pki.ca)), LOOPBACK))
    assert not assoc.is_established


def test_plain_tcp_sender_cannot_associate(tls_gate: TlsGate, pki: Pki) -> None:
    assert not _associate(tls_gate.port, None).is_established


def test_silent_connection_does_not_block_other_senders(tls_gate: TlsGate, pki: Pki) -> None:
    """The TLS handshake runs in each association's thread, not in the server's accept loop."""
    tls = TlsClient(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    with socket.create_connection((LOOPBACK, tls_gate.port)):  # connects, never says a word
        assoc = _associate(tls_gate.port, (client_context(tls), LOOPBACK))
        assert assoc.is_established
        assert int(assoc.send_c_echo().Status) == StoreStatus.SUCCESS
        assoc.release()


def test_contexts_refuse_tls_below_1_2(pki: Pki) -> None:
    server = server_context(TlsServer(cert_file=pki.server_cert, key_file=pki.server_key, ca_file=pki.ca))
    client = client_context(TlsClient(ca_file=pki.ca))
    assert server.minimum_version == client.minimum_version == MIN_TLS_VERSION == ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname


@dataclass
class Received:
    port: int
    sop_instance_uids: list[str]


@pytest.fixture
def tls_destination(pki: Pki) -> Iterator[Received]:
    """A plain pynetdicom Storage SCP behind mutual TLS: the PACS the gate forwards to."""
    received = Received(0, [])

    def on_store(event: evt.Event) -> int:
        ds: Dataset = event.dataset
        received.sop_instance_uids.append(str(ds.SOPInstanceUID))
        return int(StoreStatus.SUCCESS)

    ae = AE(ae_title=DEST_AE)
    ae.add_supported_context(CTImageStorage)
    ae.add_supported_context(Verification)
    ssl_context = server_context(
        TlsServer(cert_file=pki.server_cert, key_file=pki.server_key, ca_file=pki.ca)
    )
    server = ae.start_server(
        (LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)], ssl_context=ssl_context
    )
    received.port = int(server.server_address[1])
    try:
        yield received
    finally:
        server.shutdown()


def _destination(port: int, tls: TlsClient) -> Destination:
    return Destination(ae_title=DEST_AE, host=LOOPBACK, port=port, tls=tls)


def test_send_files_over_mutual_tls(tls_destination: Received, pki: Pki, ct_path: Path) -> None:
    tls = TlsClient(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    [outcome] = send_files([ct_path], _destination(tls_destination.port, tls), calling_ae=GATE_AE)
    assert outcome.delivered, outcome.error
    wait_until(lambda: tls_destination.sop_instance_uids, timeout=10, what="the stored instance")
    assert tls_destination.sop_instance_uids == [str(dcmread(ct_path).SOPInstanceUID)]
    assert echo(_destination(tls_destination.port, tls), calling_ae=GATE_AE)


def test_send_files_with_the_wrong_ca_fails_readably(
    tls_destination: Received, pki: Pki, ct_path: Path
) -> None:
    tls = TlsClient(ca_file=pki.other_ca, cert_file=pki.client_cert, key_file=pki.client_key)
    [outcome] = send_files([ct_path], _destination(tls_destination.port, tls), calling_ae=GATE_AE)
    assert not outcome.delivered and outcome.status is None
    assert outcome.error is not None and "certificate verify failed" in outcome.error
    assert tls_destination.sop_instance_uids == []
    assert not echo(_destination(tls_destination.port, tls), calling_ae=GATE_AE)


def test_send_files_with_a_missing_ca_file_says_so(
    tls_destination: Received, tmp_path: Path, ct_path: Path
) -> None:
    tls = TlsClient(ca_file=tmp_path / "absent.pem")
    [outcome] = send_files([ct_path], _destination(tls_destination.port, tls), calling_ae=GATE_AE)
    assert outcome.status is None and outcome.error is not None
    assert "absent.pem" in outcome.error
