"""Nothing lost under load: concurrent senders of both kinds into one `gate serve`.

Four senders at once — two pynetdicom SCUs (threads) and two DCMTK storescu processes — each send
25 instances of two synthetic studies (MR images and their SEGs) over their own association. Every
instance must be answered Success, have its database row, and have a spool file whose data set is
the one sent. No timing is asserted here: speed lives in ``python -m bench``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from bench.network import SUCCESS, build_corpus, send_concurrently, sender_kinds, split
from gate.store.db import make_engine, session_factory
from gate.store.models import Instance
from tests.conftest import free_port, start_gate, stop_gate, write_config

pytestmark = pytest.mark.e2e

SENDERS = 4
PER_SENDER = 25


def test_concurrent_senders_lose_nothing(tmp_path: Path) -> None:
    # 2 studies × (48 MR + good and bad SEG) = 100 instances = 4 senders × 25.
    corpus = build_corpus(tmp_path / "corpus", n_studies=2, n_slices=48)
    assert len(corpus.files) == SENDERS * PER_SENDER
    port = free_port()
    storage = tmp_path / "var"
    database_url = f"sqlite:///{tmp_path / 'gate.db'}"
    config = write_config(
        tmp_path / "config.yaml", port=port, storage=storage, database_url=database_url, pacs_port=free_port()
    )
    gate = start_gate(config, port, storage, database_url, tmp_path / "gate.log")
    try:
        kinds = sender_kinds(SENDERS)
        assert sorted(kinds) == ["pynetdicom", "pynetdicom", "storescu", "storescu"]
        sent = send_concurrently(
            split(corpus.files, SENDERS), kinds, port, "QGATE", pynetdicom_in_threads=True
        )
    finally:
        stop_gate(gate)

    assert sent.errors == [], sent.errors
    not_success = {u: s for u, s in sent.statuses.items() if s != SUCCESS}
    assert not not_success, not_success
    assert set(sent.statuses) == {f.sop_instance_uid for f in corpus.files}

    sessions = session_factory(make_engine(database_url))
    with sessions() as session:
        rows = {i.sop_instance_uid: i for i in session.scalars(select(Instance)).all()}
    assert set(rows) == {f.sop_instance_uid for f in corpus.files}, gate.log()[-3000:]
    for f in corpus.files:
        row = rows[f.sop_instance_uid]
        spooled = dcmread(storage / "spool" / row.path)
        assert spooled.SOPInstanceUID == f.sop_instance_uid
        assert row.study_instance_uid == f.study_instance_uid
        assert spooled.PixelData == dcmread(f.path).PixelData, f.sop_instance_uid
