"""Network benchmark: the same corpus, the same concurrent senders, four receivers, interleaved runs.

Receivers (each started fresh per run, on loopback, storage in its own temporary folder):

- ``baseline`` — :mod:`bench.baseline_scp`, a bare pynetdicom SCP that writes + fsyncs, nothing more;
- ``gate`` — ``gate serve`` with its SQLite default, verification running as it would;
- ``storescp`` — DCMTK's storescp with its defaults (one association at a time, no fsync);
- ``orthanc`` — Orthanc with a temporary configuration (built-in defaults, as Debian ships them).

Senders: half pynetdicom SCUs (each its own process, one association, data sets read before the
clock starts), half DCMTK storescu processes; the corpus is dealt to them round-robin, so they work
through the studies together and the first study can be verified while later ones arrive. A run's
figure is the wall time from the first sender's start to the last sender's end; every figure is
quoted as a ratio against the baseline run of the same repetition, because the machine's load
varies between commands.

Zero loss: every sent instance must be answered 0x0000 and be found in the receiver's storage
under its SOP Instance UID (the gate: a database row and a spool file whose data set carries it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE

REPO = Path(__file__).resolve().parent.parent
STORESCU = "/usr/bin/storescu"  # by path: pynetdicom's own storescu script shadows DCMTK's in a venv
STORESCP = "/usr/bin/storescp"
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
SUCCESS = "0x0000"
SEND_TIMEOUT_S = 180.0  # one sender's whole job; the ACSE/DIMSE timeouts below are per message
START_TIMEOUT_S = 60.0
VERDICT_TIMEOUT_S = 120.0


# -- corpus ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusFile:
    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    size_bytes: int


@dataclass(frozen=True)
class Corpus:
    """Synthetic studies (MR series + good and bad SEG each), in sending order: study by study,
    images first, then the SEGs."""

    root: Path
    files: list[CorpusFile]
    studies: list[Any]  # gate.synth.study.StudyFiles

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def describe(self) -> dict[str, Any]:
        segs = sum(1 for f in self.files if f.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4")
        return {
            "studies": len(self.studies),
            "instances": len(self.files),
            "mr_instances": len(self.files) - segs,
            "seg_instances": segs,
            "bytes": self.total_bytes,
            "mean_mr_bytes": round(
                statistics.mean(f.size_bytes for f in self.files if f.sop_class_uid != SEG_CLASS)
            ),
        }


SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def build_corpus(root: Path, n_studies: int, n_slices: int, first_seed: int = 100) -> Corpus:
    """Write ``n_studies`` synthetic studies of ``n_slices`` 256×256 MR instances and two SEGs each."""
    from gate.synth.study import write_synthetic_study

    studies = [
        write_synthetic_study(root / f"study{k:02d}", seed=first_seed + k, n_slices=n_slices)
        for k in range(n_studies)
    ]
    files = []
    for study in studies:
        for path in [*study.image_paths, study.good_seg_path, study.bad_seg_path]:
            ds = dcmread(path, stop_before_pixels=True)
            files.append(
                CorpusFile(
                    path=path,
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    sop_class_uid=str(ds.SOPClassUID),
                    study_instance_uid=str(ds.StudyInstanceUID),
                    size_bytes=path.stat().st_size,
                )
            )
    return Corpus(root=root, files=files, studies=studies)


def split(files: Sequence[CorpusFile], n: int) -> list[list[CorpusFile]]:
    """Deal the files to ``n`` senders round-robin, keeping the sending order within each.

    All senders work through the studies together, as a router fanning one queue out over several
    associations does, so the first study is complete (and verified) while later ones still arrive.
    """
    return [list(files[k::n]) for k in range(n)]


# -- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM: the process's peak resident set size so far (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the process (all its threads) so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _uid_of(path: Path) -> str | None:
    try:
        return str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except (InvalidDicomError, OSError, AttributeError, ValueError, EOFError):
        return None


# -- receivers ------------------------------------------------------------------------------------
class Receiver:
    """One receiver run: start in ``workdir``, receive, say what it stored, stop."""

    name = ""
    called_ae = ""
    notes = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        raise NotImplementedError

    def start(self) -> None:
        argv, cwd, env = self.command()
        self._log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self._log is not None:
            self._log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stored_uids(self) -> set[str]:
        """SOP Instance UIDs found in the receiver's storage, each read back from its file."""
        raise NotImplementedError

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


class BaselineReceiver(Receiver):
    name = "baseline"
    called_ae = "BASELINE"
    notes = "pynetdicom SCP, threaded associations; write + fsync per instance, nothing else"

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        out = self.workdir / "files"
        argv = [sys.executable, "-m", "bench.baseline_scp", "--port", str(self.port), "--dir", str(out)]
        return argv, REPO, dict(os.environ, PYTHONUNBUFFERED="1")

    def stored_uids(self) -> set[str]:
        found = set()
        for path in (self.workdir / "files").glob("*.dcm"):
            uid = _uid_of(path)
            if uid is not None and path.stem == uid:
                found.add(uid)
        return found


class GateReceiver(Receiver):
    name = "gate"
    called_ae = "QGATE"
    notes = "gate serve: checks, spool (temp + fsync + rename + dir fsync), SQLite row (WAL, FULL)"

    def __init__(self, workdir: Path, model_dir: Path) -> None:
        super().__init__(workdir)
        self.storage = workdir / "var"
        self.config = workdir / "config.yaml"
        self.config.write_text(
            "\n".join(
                [
                    "ae_title: QGATE",
                    f"port: {self.port}",
                    "bind_address: 127.0.0.1",
                    f"storage_dir: {self.storage}",
                    f"model_dir: {model_dir}",
                    # No destinations: routing is not measured here; the outbox keeps the sends.
                    "retry: {initial_seconds: 3600, factor: 2, max_seconds: 3600, max_attempts: 1}",
                ]
            )
            + "\n"
        )

    @property
    def db_path(self) -> Path:
        return self.storage / "gate.db"

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        argv = [sys.executable, "-m", "gate.cli", "serve", "--config", str(self.config)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        return argv, REPO, env

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(sql).fetchall()

    def stored_uids(self) -> set[str]:
        """UIDs with a database row whose spool file exists and carries that UID."""
        found = set()
        for uid, rel in self._query("SELECT sop_instance_uid, path FROM instances"):
            if _uid_of(self.storage / "spool" / rel) == uid:
                found.add(uid)
        return found

    def verifications(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT seg_sop_instance_uid, study_instance_uid, state, verdict, timings, decided_at "
            "FROM seg_verifications ORDER BY id"
        )
        return [
            {
                "seg_sop_instance_uid": r[0],
                "study_instance_uid": r[1],
                "state": r[2],
                "verdict": r[3],
                "timings": json.loads(r[4]) if r[4] else None,
                "decided_at": _parse_db_time(r[5]),
            }
            for r in rows
        ]

    def wait_for_verdicts(self, expected: int, timeout: float = VERDICT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Poll until ``expected`` SEGs have left the waiting state, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.verifications()
            done = [r for r in rows if r["state"] != "waiting"]
            if len(done) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.25)

    def log_excerpt(self, lines: int = 15) -> list[str]:
        """The last log lines other than per-instance receipts: why verdicts are missing, say."""
        text = self.log_tail(200_000).splitlines()
        return [ln for ln in text if "stored instance" not in ln][-lines:]


def _parse_db_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class StorescpReceiver(Receiver):
    name = "storescp"
    called_ae = "STORESCP"
    notes = "DCMTK storescp, Debian defaults: no options but the port (one association at a time, no fsync)"

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        out = self.workdir / "files"
        out.mkdir(parents=True, exist_ok=True)
        return [STORESCP, str(self.port)], out, None

    def stored_uids(self) -> set[str]:
        return {uid for p in (self.workdir / "files").iterdir() if p.is_file() and (uid := _uid_of(p))}


class OrthancReceiver(Receiver):
    name = "orthanc"
    called_ae = "ORTHANC"
    notes = "Orthanc, temporary configuration: storage and index paths, ports, AE; all else its defaults"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.http_port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "Plugins": [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAet": self.called_ae,
            "DicomPort": self.port,
        }
        (workdir / "orthanc.json").write_text(json.dumps(config))

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        return [ORTHANC, str(self.workdir / "orthanc.json")], self.workdir, None

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        wait_for_port(self.http_port, self.proc)

    def stored_uids(self) -> set[str]:
        url = f"http://127.0.0.1:{self.http_port}/instances?expand"
        with urllib.request.urlopen(url, timeout=60) as rsp:
            items = json.loads(rsp.read())
        return {str(i["MainDicomTags"]["SOPInstanceUID"]) for i in items}


# -- senders --------------------------------------------------------------------------------------
class PynetdicomSender:
    """One association, C-STORE each data set; data sets are read before the clock starts."""

    kind = "pynetdicom"

    def __init__(self, files: Sequence[CorpusFile], calling_ae: str) -> None:
        self.files = list(files)
        self.calling_ae = calling_ae
        self.datasets = [dcmread(f.path) for f in self.files]
        self.statuses: dict[str, str] = {}
        self.error: str | None = None

    def run(self, port: int, called_ae: str) -> None:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 120
        for sop_class in sorted({f.sop_class_uid for f in self.files}):
            ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
        if not assoc.is_established:
            self.error = "association not established"
            return
        try:
            for f, ds in zip(self.files, self.datasets, strict=True):
                rsp = assoc.send_c_store(ds)
                self.statuses[f.sop_instance_uid] = (
                    f"0x{int(rsp.Status):04X}" if rsp and "Status" in rsp else "no response"
                )
                if not assoc.is_established:
                    self.error = "association lost"
                    break
        finally:
            if assoc.is_established:
                assoc.release()


class StorescuSender:
    """One DCMTK storescu process, one association; statuses parsed from its verbose log."""

    kind = "storescu"

    def __init__(self, files: Sequence[CorpusFile], calling_ae: str) -> None:
        self.files = list(files)
        self.calling_ae = calling_ae
        self.statuses: dict[str, str] = {}
        self.error: str | None = None
        self.proc: subprocess.Popen[str] | None = None

    def launch(self, port: int, called_ae: str) -> None:
        argv = [STORESCU, "-v", "-R", "-aet", self.calling_ae, "-aec", called_ae, "-to", "120"]
        argv += ["-ta", "120", "-td", "120", "127.0.0.1", str(port), *(str(f.path) for f in self.files)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, timeout: float) -> None:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            self.error = f"storescu still running after {timeout:.0f} s"
        by_path = {str(f.path): f.sop_instance_uid for f in self.files}
        current: str | None = None
        for line in out.splitlines():
            if line.startswith("I: Sending file: "):
                current = by_path.get(line[len("I: Sending file: ") :].strip())
            elif "Received Store Response" in line and current is not None:
                text = line.split("Received Store Response", 1)[1].strip(" ()")
                self.statuses[current] = SUCCESS if text == "Success" else text
                current = None
        if self.proc.returncode != 0 and self.error is None:
            self.error = f"storescu exit {self.proc.returncode}: {out[-300:]}"


class PynetdicomProcess:
    """A :class:`PynetdicomSender` in its own interpreter (``python -m bench.network send``), so
    concurrent senders do not share a GIL with each other or with this process. It reads its data
    sets, says ``ready``, and sends when told ``go``; statuses come back as one JSON line."""

    kind = "pynetdicom"

    def __init__(self, files: Sequence[CorpusFile], calling_ae: str, port: int, called_ae: str) -> None:
        self.files = list(files)
        self.calling_ae = calling_ae
        self.statuses: dict[str, str] = {}
        self.error: str | None = None
        argv = [sys.executable, "-m", "bench.network", "send", str(port), called_ae, calling_ae]
        self.proc = subprocess.Popen(
            [*argv, *(str(f.path) for f in self.files)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready: list[str] = []
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not ready or ready[0].strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"sender {self.calling_ae} not ready: {err[-500:]}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> None:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.error = f"sender still running after {timeout:.0f} s"
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            self.error = self.error or f"sender exit {self.proc.returncode}: {err[-500:]}"
            return
        self.statuses = report["statuses"]
        self.error = self.error or report["error"]


def _send_main(argv: list[str]) -> int:
    """``python -m bench.network send PORT CALLED_AE CALLING_AE FILE...`` (see PynetdicomProcess)."""
    port, called_ae, calling_ae, *paths = argv
    files = []
    for p in paths:
        ds = dcmread(p, stop_before_pixels=True)
        files.append(CorpusFile(Path(p), str(ds.SOPInstanceUID), str(ds.SOPClassUID), "", 0))
    sender = PynetdicomSender(files, calling_ae)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    sender.run(int(port), called_ae)
    print(json.dumps({"statuses": sender.statuses, "error": sender.error}), flush=True)
    return 0


@dataclass
class SendRun:
    wall_s: float
    statuses: dict[str, str]
    errors: list[str]


def send_concurrently(
    chunks: Sequence[Sequence[CorpusFile]],
    kinds: Sequence[str],
    port: int,
    called_ae: str,
    *,
    pynetdicom_in_threads: bool = False,
) -> SendRun:
    """Send chunk k with a sender of ``kinds[k]`` ("pynetdicom" or "storescu"), all at once.

    pynetdicom senders run as processes (the benchmark) or as threads of this process (the load
    test); either way they read their data sets before the clock starts.
    """
    py_chunks = [(k, c) for k, c in enumerate(chunks) if kinds[k] == "pynetdicom"]
    dc = [StorescuSender(c, f"BENCHDC{k}") for k, c in enumerate(chunks) if kinds[k] == "storescu"]
    threads: list[threading.Thread] = []
    py: list[PynetdicomSender | PynetdicomProcess] = []
    if pynetdicom_in_threads:
        py = [PynetdicomSender(c, f"BENCHPY{k}") for k, c in py_chunks]
        threads = [
            threading.Thread(target=s.run, args=(port, called_ae), name=s.calling_ae, daemon=True) for s in py
        ]
    else:
        procs = [PynetdicomProcess(c, f"BENCHPY{k}", port, called_ae) for k, c in py_chunks]
        for p in procs:
            p.wait_ready(START_TIMEOUT_S)
        py = list(procs)
    t0 = time.perf_counter()
    for s in dc:
        s.launch(port, called_ae)
    for t in threads:
        t.start()
    for s in py:
        if isinstance(s, PynetdicomProcess):
            s.go()
    deadline = t0 + SEND_TIMEOUT_S
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    for s in py:
        if isinstance(s, PynetdicomProcess):
            s.finish(max(1.0, deadline - time.perf_counter()))
    for s in dc:
        s.finish(max(1.0, deadline - time.perf_counter()))
    wall = time.perf_counter() - t0
    statuses: dict[str, str] = {}
    errors = [f"{t.name}: still sending after {SEND_TIMEOUT_S:.0f} s" for t in threads if t.is_alive()]
    for sender in [*py, *dc]:
        statuses.update(sender.statuses)
        if sender.error:
            errors.append(f"{sender.calling_ae}: {sender.error}")
    return SendRun(wall, statuses, errors)


def sender_kinds(n: int) -> list[str]:
    """Alternate pynetdicom and storescu senders: n=4 gives two of each."""
    return ["pynetdicom" if k % 2 == 0 else "storescu" for k in range(n)]


# -- runs -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    receiver: str
    repetition: int
    wall_s: float
    instances: int
    bytes: int
    answered_success: int
    stored: int
    lost: list[str]
    not_success: dict[str, str]
    errors: list[str]
    cpu_s: float | None
    peak_rss_bytes: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.wall_s

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.wall_s

    @property
    def zero_loss(self) -> bool:
        return not self.lost and not self.not_success and self.answered_success == self.instances

    def as_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "repetition": self.repetition,
            "wall_s": round(self.wall_s, 4),
            "instances": self.instances,
            "bytes": self.bytes,
            "instances_per_s": round(self.instances_per_s, 2),
            "mb_per_s": round(self.mb_per_s, 2),
            "answered_success": self.answered_success,
            "stored": self.stored,
            "zero_loss": self.zero_loss,
            "lost": self.lost[:10],
            "not_success": dict(list(self.not_success.items())[:10]),
            "errors": self.errors,
            "cpu_s_while_receiving": None if self.cpu_s is None else round(self.cpu_s, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            **self.extra,
        }


def make_receiver(name: str, workdir: Path, model_dir: Path) -> Receiver:
    if name == "baseline":
        return BaselineReceiver(workdir)
    if name == "gate":
        return GateReceiver(workdir, model_dir)
    if name == "storescp":
        return StorescpReceiver(workdir)
    if name == "orthanc":
        return OrthancReceiver(workdir)
    raise ValueError(f"unknown receiver {name!r}")


def run_once(
    name: str, corpus: Corpus, n_senders: int, repetition: int, scratch: Path, model_dir: Path
) -> RunResult:
    """Start a fresh receiver, send the corpus with ``n_senders`` concurrent senders, check, stop."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{repetition}-", dir=scratch))
    receiver = make_receiver(name, workdir, model_dir)
    receiver.start()
    try:
        cpu0 = cpu_seconds(receiver.pid)
        sent_at = datetime.now(UTC)
        sent = send_concurrently(
            split(corpus.files, n_senders), sender_kinds(n_senders), receiver.port, receiver.called_ae
        )
        send_end = datetime.now(UTC)
        cpu1 = cpu_seconds(receiver.pid)
        extra: dict[str, Any] = {}
        if isinstance(receiver, GateReceiver):
            extra = _gate_extra(receiver, corpus, sent_at, send_end)
        stored = receiver.stored_uids()
        rss = peak_rss_bytes(receiver.pid)
    finally:
        receiver.stop()
    uids = [f.sop_instance_uid for f in corpus.files]
    not_success = {u: sent.statuses.get(u, "no answer") for u in uids if sent.statuses.get(u) != SUCCESS}
    result = RunResult(
        receiver=name,
        repetition=repetition,
        wall_s=sent.wall_s,
        instances=len(uids),
        bytes=corpus.total_bytes,
        answered_success=sum(1 for u in uids if sent.statuses.get(u) == SUCCESS),
        stored=sum(1 for u in uids if u in stored),
        lost=[u for u in uids if u not in stored],
        not_success=not_success,
        errors=sent.errors,
        cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        peak_rss_bytes=rss,
        extra=extra,
    )
    if not result.zero_loss:
        result.errors.append("receiver log tail: " + receiver.log_tail())
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _gate_extra(gate: GateReceiver, corpus: Corpus, sent_at: datetime, send_end: datetime) -> dict[str, Any]:
    """Did verification overlap receiving? Wait for the verdicts and say how many came before the end."""
    expected = sum(1 for f in corpus.files if f.sop_class_uid == SEG_CLASS)
    rows = gate.wait_for_verdicts(expected)
    decided = [r for r in rows if r["decided_at"] is not None]
    during = [r for r in decided if r["decided_at"] <= send_end]
    latencies = [r["timings"]["latency"] for r in decided if r["timings"] and "latency" in r["timings"]]
    extra: dict[str, Any] = {}
    if len(decided) < expected:
        extra["gate_log_excerpt"] = gate.log_excerpt()
    return {
        **extra,
        "segs_expected": expected,
        "verdicts_recorded": len(decided),
        "verdicts_during_receive": len(during),
        "verification_overlapped_receive": bool(during),
        "verdict_states": sorted({r["state"] for r in rows}),
        "latency_under_load_s": _spread(latencies),
    }


def _spread(values: Iterable[float]) -> dict[str, float] | None:
    vals = sorted(values)
    if not vals:
        return None
    return {
        "median": round(statistics.median(vals), 4),
        "min": round(vals[0], 4),
        "max": round(vals[-1], 4),
        "n": len(vals),
    }


def run_network(
    corpus: Corpus,
    *,
    receivers: Sequence[str],
    repetitions: int,
    n_senders: int,
    scratch: Path,
    model_dir: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Interleave the receivers ``repetitions`` times (order rotated each time) and summarise."""
    runs: list[RunResult] = []
    for rep in range(repetitions):
        order = list(receivers[rep % len(receivers) :]) + list(receivers[: rep % len(receivers)])
        for name in order:
            result = run_once(name, corpus, n_senders, rep, scratch, model_dir)
            runs.append(result)
            progress(
                f"  rep {rep} {name:9s} {result.wall_s:7.2f} s  {result.instances_per_s:7.1f} inst/s  "
                f"{result.mb_per_s:6.1f} MB/s  zero loss: {result.zero_loss}"
            )
    return {"runs": [r.as_dict() for r in runs], "summary": summarise(runs, receivers)}


def summarise(runs: Sequence[RunResult], receivers: Sequence[str]) -> dict[str, Any]:
    """Median and spread per receiver; ratios against the baseline of the same repetition."""
    baseline = {r.repetition: r for r in runs if r.receiver == "baseline"}
    summary: dict[str, Any] = {}
    for name in receivers:
        mine = [r for r in runs if r.receiver == name]
        paired = [baseline[r.repetition] for r in mine if r.repetition in baseline]
        # > 1 means slower than the baseline: receiver wall time / baseline wall time, same repetition.
        slowdown = [r.wall_s / b.wall_s for r, b in zip(mine, paired, strict=False)]
        cpu_ratio = [r.cpu_s / b.cpu_s for r, b in zip(mine, paired, strict=False) if r.cpu_s and b.cpu_s]
        rss_ratio = [
            r.peak_rss_bytes / b.peak_rss_bytes
            for r, b in zip(mine, paired, strict=False)
            if r.peak_rss_bytes and b.peak_rss_bytes
        ]
        summary[name] = {
            "runs": len(mine),
            "wall_s": _spread(r.wall_s for r in mine),
            "instances_per_s": _spread(r.instances_per_s for r in mine),
            "mb_per_s": _spread(r.mb_per_s for r in mine),
            "slowdown_vs_baseline": _spread(slowdown),
            "cpu_s_while_receiving": _spread(r.cpu_s for r in mine if r.cpu_s is not None),
            "cpu_ratio_vs_baseline": _spread(cpu_ratio),
            "peak_rss_mib": _spread((r.peak_rss_bytes or 0) / 2**20 for r in mine),
            "peak_rss_ratio_vs_baseline": _spread(rss_ratio),
            "zero_loss_runs": sum(1 for r in mine if r.zero_loss),
            "lost_total": sum(len(r.lost) for r in mine),
            "not_success_total": sum(len(r.not_success) for r in mine),
        }
        if name == "gate":
            summary[name]["verification_overlapped_runs"] = sum(
                1 for r in mine if r.extra.get("verification_overlapped_receive")
            )
            summary[name]["verdicts_during_receive"] = [r.extra.get("verdicts_during_receive") for r in mine]
            summary[name]["latency_under_load_s"] = _spread(
                v for r in mine for v in [(r.extra.get("latency_under_load_s") or {}).get("median")] if v
            )
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "send":
        sys.exit(_send_main(sys.argv[2:]))
    sys.exit("usage: python -m bench.network send PORT CALLED_AE CALLING_AE FILE...")
