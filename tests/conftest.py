"""Shared fixtures: free ports, an Orthanc PACS from Debian's package, a running gate."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

REPO = Path(__file__).resolve().parent.parent
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DCMTK_STORESCU = "/usr/bin/storescu"  # by path: pynetdicom's own storescu script shadows DCMTK's in a venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class OrthancPacs:
    """A real Orthanc on loopback: the PACS and report destination of the end-to-end tests.

    It can be stopped and started again on the same ports and storage (a PACS outage)."""

    aet: str
    dicom_port: int
    http_port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.root / "orthanc.log", "ab") as log:
            self.proc = subprocess.Popen(
                [ORTHANC, str(self.root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.http_port)
        wait_for_port(self.dicom_port)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rest(self, path: str, data: bytes | None = None) -> object:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data)
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return json.loads(rsp.read())

    def has_instance(self, sop_instance_uid: str) -> bool:
        found = self.rest("/tools/lookup", sop_instance_uid.encode())
        return any(item.get("Type") == "Instance" for item in found)  # type: ignore[union-attr]

    def instance_tags(self, sop_instance_uid: str) -> dict[str, object]:
        found = self.rest("/tools/lookup", sop_instance_uid.encode())
        ident = next(i["ID"] for i in found if i["Type"] == "Instance")  # type: ignore[union-attr,index]
        return self.rest(f"/instances/{ident}/simplified-tags")  # type: ignore[return-value]

    def instance_count(self) -> int:
        return int(self.rest("/statistics")["CountInstances"])  # type: ignore[index]

    def series_instance_count(self, sop_instance_uid: str) -> int:
        """Instances Orthanc holds in the series of ``sop_instance_uid`` (0 if it has none of it)."""
        found = self.rest("/tools/lookup", sop_instance_uid.encode())
        ident = next((i["ID"] for i in found if i["Type"] == "Instance"), None)  # type: ignore[union-attr]
        if ident is None:
            return 0
        series = self.rest(f"/instances/{ident}/series")
        return len(series["Instances"])  # type: ignore[index]


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancPacs]:
    if not Path(ORTHANC).exists():
        pytest.fail("Orthanc is not installed: .ci/run installs Debian's orthanc package")
    dicom_port, http_port = free_port(), free_port()
    root = tmp_path / "orthanc"
    root.mkdir()
    config = {
        "Name": "test-pacs",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "Plugins": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAet": "PACS",
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "UnknownSopClassAccepted": True,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    pacs = OrthancPacs("PACS", dicom_port, http_port, root)
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


def write_config(
    path: Path,
    *,
    port: int,
    storage: Path,
    database_url: str | None,
    pacs_port: int,
    assembly_wait: float = 300.0,
) -> Path:
    lines = [
        "ae_title: QGATE",
        f"port: {port}",
        "bind_address: 127.0.0.1",
        f"storage_dir: {storage}",
        *([f"database_url: {database_url}"] if database_url else []),
        "destinations:",
        f"  pacs:    {{ae_title: PACS, host: 127.0.0.1, port: {pacs_port}}}",
        f"  reports: {{ae_title: PACS, host: 127.0.0.1, port: {pacs_port}}}",
        f"assembly_wait_seconds: {assembly_wait}",
        "worker_poll_seconds: 0.2",
        "min_free_bytes: 1048576",
        "retry: {initial_seconds: 0.5, factor: 2, max_seconds: 5, max_attempts: 10}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RunningGate:
    port: int
    config: Path
    storage: Path
    database_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_gate(config: Path, port: int, storage: Path, database_url: str, log_path: Path) -> RunningGate:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    log = open(log_path, "ab")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    gate = RunningGate(port, config, storage, database_url, proc, log_path)
    try:
        wait_for_port(port, timeout=60)
    except TimeoutError:
        proc.kill()
        raise AssertionError("gate did not start:\n" + gate.log()) from None
    return gate


def stop_gate(gate: RunningGate) -> None:
    gate.proc.terminate()
    try:
        gate.proc.wait(20)
    except subprocess.TimeoutExpired:
        gate.proc.kill()
        gate.proc.wait()


def wait_until(predicate, timeout: float = 120.0, interval: float = 0.5, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def postgres_url() -> str:
    """A fresh database on the local PostgreSQL server (trust auth on this machine kind)."""
    import psycopg

    name = f"gate_test_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it): {exc}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_postgres(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class CountingPeer:
    """A PACS stand-in that is a real SCP: answers each C-STORE with ``status``, counts what it stored."""

    def __init__(self, status: int = 0x0000) -> None:
        self.status = status
        self.received: list[str] = []  # SOP Instance UIDs answered with Success, in order
        self._lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = int(self.server.server_address[1])

    def _store(self, event: evt.Event) -> int:
        status = self.status
        if status == 0:
            with self._lock:
                self.received.append(str(event.dataset.SOPInstanceUID))
        return status

    def count(self, uid: str) -> int:
        with self._lock:
            return self.received.count(uid)

    def shutdown(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peer() -> Iterator[CountingPeer]:
    p = CountingPeer()
    yield p
    p.shutdown()
