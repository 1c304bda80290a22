"""The stages after receive, driven by database state: assemble → verify → record → route.

Each step is keyed by the SEG's SOP Instance UID and idempotent, so a crash anywhere resumes on
restart, and the same functions could later be dispatched by a task queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gate.assemble.loader import load_verification_input, read_dataset
from gate.assemble.references import referenced_source_uids
from gate.config import Settings
from gate.dicom import SR_SOP_CLASS
from gate.errors import InvalidObjectError
from gate.record import record_error, record_incomplete, record_verdict
from gate.report.json_report import incomplete_report, verification_report, write_json_report
from gate.report.sr import build_verification_sr, write_sr
from gate.route.outbox import dispatch_due, enqueue
from gate.store.db import as_utc
from gate.store.models import Instance, SegState, SegVerification, utcnow
from gate.store.spool import Spool
from gate.verify.recnet import ModelError
from gate.verify.result import Verdict
from gate.verify.verifier import Verifier

log = logging.getLogger("gate.worker")

MAX_FAILURE_BACKOFF_SECONDS = 60.0


@dataclass
class Pipeline:
    settings: Settings
    sessions: sessionmaker[Session]
    spool: Spool
    verifier_factory: Callable[[], Verifier]
    _verifier: Verifier | None = field(default=None, init=False)

    @property
    def verifier(self) -> Verifier:
        # Loaded on first use so that `gate serve` answers associations before the model is loaded.
        if self._verifier is None:
            self._verifier = self.verifier_factory()
        return self._verifier

    # -- assemble ---------------------------------------------------------------------------------
    def assemble_once(self, now: datetime | None = None) -> int:
        """Advance every waiting SEG whose sources are all stored, or whose wait ran out."""
        now = now or utcnow()
        with self.sessions() as session:
            waiting = session.scalars(
                select(SegVerification)
                .where(SegVerification.state == SegState.WAITING)
                .order_by(SegVerification.id)
            ).all()
        progressed = 0
        for row in waiting:
            try:
                progressed += self._assemble_one(row.seg_sop_instance_uid, now)
            except ModelError:
                raise  # no SEG can be verified: the runner logs it once per poll
            except Exception:  # noqa: BLE001 - one SEG's unforeseen failure must not starve the rest
                log.exception(
                    "SEG %s (study %s): assembly/verification failed; it stays waiting and is retried",
                    row.seg_sop_instance_uid,
                    row.study_instance_uid,
                )
        return progressed

    def _assemble_one(self, seg_uid: str, now: datetime) -> int:
        with self.sessions.begin() as session:
            row = session.scalar(
                select(SegVerification).where(SegVerification.seg_sop_instance_uid == seg_uid)
            )
            if row is None or row.state != SegState.WAITING:
                return 0
            seg_inst = session.get(Instance, seg_uid)
            assert seg_inst is not None  # foreign key
            if row.referenced_uids is None:
                try:
                    seg_ds = read_dataset(self.spool.absolute(seg_inst.path))
                except InvalidObjectError as exc:
                    record_error(session, row, str(exc), decided_at=now)
                    return 1
                refs = referenced_source_uids(seg_ds)
                if not refs:
                    record_error(session, row, "SEG references no source instances", decided_at=now)
                    log.warning("SEG %s (study %s): no source references", seg_uid, row.study_instance_uid)
                    return 1
                row.referenced_uids = refs
            refs = list(row.referenced_uids)
            stored = set(
                session.scalars(
                    select(Instance.sop_instance_uid).where(Instance.sop_instance_uid.in_(refs))
                ).all()
            )
            missing = [uid for uid in refs if uid not in stored]
            if missing:
                waited = (as_utc(now) - as_utc(row.received_at)).total_seconds()
                if waited < self.settings.assembly_wait_seconds:
                    row.missing_uids = missing
                    return 0
                report_path = self.settings.reports_dir / f"{seg_uid}.json"
                write_json_report(
                    incomplete_report(seg_uid, row.study_instance_uid, missing, waited), report_path
                )
                record_incomplete(session, row, missing, report_path=str(report_path), decided_at=now)
                log.warning(
                    "SEG %s (study %s) incomplete after %.0f s: %d source(s) missing",
                    seg_uid,
                    row.study_instance_uid,
                    waited,
                    len(missing),
                )
                return 1
        # All sources stored: verify outside the assembly transaction (it takes seconds).
        self.verify_and_record(seg_uid)
        return 1

    # -- verify + record --------------------------------------------------------------------------
    def verify_and_record(self, seg_uid: str) -> None:
        t0 = time.perf_counter()
        with self.sessions() as session:
            row = session.scalar(
                select(SegVerification).where(SegVerification.seg_sop_instance_uid == seg_uid)
            )
            assert row is not None
            refs = list(row.referenced_uids or [])
            paths = {
                i.sop_instance_uid: self.spool.absolute(i.path)
                for i in session.scalars(
                    select(Instance).where(Instance.sop_instance_uid.in_(refs + [seg_uid]))
                ).all()
            }
            last_arrival = session.scalar(
                select(func.max(Instance.received_at)).where(Instance.sop_instance_uid.in_(refs + [seg_uid]))
            )
        try:
            seg_ds = read_dataset(paths[seg_uid])
            sources = {uid: read_dataset(paths[uid]) for uid in refs}
            inp = load_verification_input(seg_ds, sources)
            t_load = time.perf_counter() - t0
            result = self.verifier.verify(inp)
        except InvalidObjectError as exc:
            with self.sessions.begin() as session:
                row = session.scalar(
                    select(SegVerification).where(SegVerification.seg_sop_instance_uid == seg_uid)
                )
                assert row is not None
                record_error(session, row, str(exc), decided_at=utcnow())
            log.error("SEG %s cannot be verified: %s", seg_uid, exc)
            return
        t1 = time.perf_counter()
        timings = dict(result.timings)
        timings["load"] = t_load
        sr_path: Path | None = None
        sr_uid: str | None = None
        if result.verdict == Verdict.FAIL:
            # Deterministic SR UID: a crash before commit regenerates the same SR, not a second one.
            sr_uid = generate_uid(entropy_srcs=[seg_uid, "qgate-sr"])
            sr = build_verification_sr(
                result,
                seg_ds,
                list(sources.values()),
                sop_instance_uid=sr_uid,
                series_instance_uid=generate_uid(entropy_srcs=[seg_uid, "qgate-sr-series"]),
            )
            sr_path = self.settings.storage_dir / "generated" / f"{sr_uid}.dcm"
            write_sr(sr, sr_path)
        report_path = self.settings.reports_dir / f"{seg_uid}.json"
        timings["report"] = time.perf_counter() - t1
        decided_at = utcnow()
        if last_arrival is not None:
            timings["latency"] = (decided_at - as_utc(last_arrival)).total_seconds()
        result = replace(result, timings={k: float(v) for k, v in timings.items()})
        write_json_report(verification_report(result), report_path)
        with self.sessions.begin() as session:
            row = session.scalar(
                select(SegVerification).where(SegVerification.seg_sop_instance_uid == seg_uid)
            )
            assert row is not None
            record_verdict(session, row, result, report_path=str(report_path), decided_at=decided_at)
            if result.verdict == Verdict.PASS:
                enqueue(
                    session,
                    seg_uid=seg_uid,
                    sop_instance_uid=seg_uid,
                    sop_class_uid=str(seg_ds.SOPClassUID),
                    path=paths[seg_uid],
                    destination="pacs",
                )
            else:
                assert sr_uid is not None and sr_path is not None
                row.sr_sop_instance_uid = sr_uid
                enqueue(
                    session,
                    seg_uid=seg_uid,
                    sop_instance_uid=sr_uid,
                    sop_class_uid=SR_SOP_CLASS,
                    path=sr_path,
                    destination="reports",
                )
        log.info(
            "SEG %s (study %s): %s, score %.4f (%s)",
            seg_uid,
            result.study_instance_uid,
            result.verdict,
            result.score,
            ", ".join(f"{s.label}={s.score:.4f}/{s.threshold:.4f}" for s in result.segments),
        )

    # -- route ------------------------------------------------------------------------------------
    def route_once(self, now: datetime | None = None) -> int:
        return dispatch_due(self.settings, self.sessions, now)


class PipelineRunner:
    """Runs the pipeline in two background threads: assemble/verify, and route (outbox)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(pipeline.assemble_once, self.wake),
                name="assemble-verify",
                daemon=True,
            ),
            threading.Thread(target=self._loop, args=(pipeline.route_once, None), name="route", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake.set()
        for t in self._threads:
            t.join(timeout)

    def _loop(self, step: Callable[[], int], wake: threading.Event | None) -> None:
        poll = self.pipeline.settings.worker_poll_seconds
        failures = 0
        while not self._stop.is_set():
            try:
                step()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a stage must not die; the log names the failure
                failures += 1
                if failures == 1:
                    log.exception("pipeline step %s failed", step.__name__)
                else:
                    log.error("pipeline step %s failed again (%d in a row): %s", step.__name__, failures, exc)
            # A failing stage (e.g. the model cannot be loaded) backs off to at most a minute instead of
            # filling the log every poll.
            delay = poll if failures == 0 else min(MAX_FAILURE_BACKOFF_SECONDS, poll * 2**failures)
            if wake is not None and failures == 0:
                wake.wait(delay)
                wake.clear()
            else:
                self._stop.wait(delay)
