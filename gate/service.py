"""Wires the running gate: database upgrade, spool, Storage SCP, pipeline workers."""

from __future__ import annotations

import logging

from pynetdicom.transport import ThreadedAssociationServer

from gate.config import Settings
from gate.config_audit import record_config_change
from gate.net.receive import ReceiveContext
from gate.net.server import start_storage_scp
from gate.store.db import make_engine, session_factory, upgrade
from gate.store.spool import Spool
from gate.verify.recnet import RecNetSession, load_shipped_model
from gate.verify.verifier import Verifier
from gate.worker import Pipeline, PipelineRunner

log = logging.getLogger("gate.service")


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: ThreadedAssociationServer | None = None
        self.runner: PipelineRunner | None = None

    def make_verifier(self) -> Verifier:
        session: RecNetSession = load_shipped_model(self.settings.model_dir)
        log.info(
            "REC-Net %s %s (sha256 %s) on %s",
            session.card.name,
            session.card.version,
            session.model_sha256[:12],
            session.provider,
        )
        return Verifier(session, thresholds=self.settings.thresholds)

    def start(self) -> None:
        s = self.settings
        s.storage_dir.mkdir(parents=True, exist_ok=True)
        upgrade(s.db_url)
        engine = make_engine(s.db_url)
        sessions = session_factory(engine)
        # Before the SCP listens: the audit trail shows a changed allow-list/TLS/route before any
        # association made under it.
        record_config_change(sessions, s)
        spool = Spool(s.spool_dir)
        for tmp in spool.remove_stale_temporaries():
            log.warning("removed %s, left half-written by an earlier run", tmp)
        pipeline = Pipeline(settings=s, sessions=sessions, spool=spool, verifier_factory=self.make_verifier)
        self.runner = PipelineRunner(pipeline)
        ctx = ReceiveContext(
            spool=spool,
            sessions=sessions,
            min_free_bytes=s.min_free_bytes,
            max_object_bytes=s.max_object_bytes,
            on_stored=self.runner.wake.set,
        )
        self.server = start_storage_scp(s, ctx)
        self.runner.start()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        if self.runner is not None:
            self.runner.stop()
