"""Receive: the C-STORE handler. Persist, then acknowledge; never verify here.

The order is the whole point (DESIGN.md, "Flow and state"): write the encoded dataset to the spool
atomically, commit its database row, and only then answer Success. Anything that stops either
step answers a failure, so the sender keeps its copy and nothing acknowledged is ever lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gate.assemble.validate import (
    PARSE_ERRORS,
    check_image_geometry,
    check_pixel_data_length,
    ensure_parsed,
    sop_class_content_mismatch,
)
from gate.dicom import is_seg
from gate.errors import InvalidObjectError, SpoolError
from gate.net.status import StoreStatus
from gate.store.models import Instance, SegState, SegVerification
from gate.store.spool import Spool, is_valid_uid

log = logging.getLogger("gate.receive")

# A data set that cannot be parsed into elements (PS3.4 B.2.3: 0xC000 "cannot understand").
DECODE_ERRORS: tuple[type[BaseException], ...] = (*PARSE_ERRORS, InvalidObjectError)


@dataclass
class ReceiveContext:
    spool: Spool
    sessions: sessionmaker[Session]
    min_free_bytes: int = 512 * 1024 * 1024
    max_object_bytes: int = 2 * 1024**3
    # Called after each stored SEG or source instance, to wake the assembler without polling delay.
    on_stored: Callable[[], None] | None = None


def _check_content(ds: Dataset, sop_class: str, transfer_syntax: UID) -> tuple[StoreStatus, str] | None:
    """Cheap checks that the data set is what its SOP class says (PS3.4 B.2.3): 0xA900 when it parses
    but is not such an object (SEG content and SEG class disagree, absurd Rows/Columns), 0xC000
    when its pixel data are shorter than the header says (truncated in transit)."""
    mismatch = sop_class_content_mismatch(ds, sop_class)
    if mismatch is not None:
        return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, mismatch
    try:
        check_image_geometry(ds)
    except InvalidObjectError as exc:
        return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, _reason(exc)
    try:
        check_pixel_data_length(ds, transfer_syntax)
    except InvalidObjectError as exc:
        return StoreStatus.CANNOT_UNDERSTAND, _reason(exc)
    return None


def _reason(exc: InvalidObjectError) -> str:
    """The message without the leading SOP Instance UID (the log line names it already)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def _status(code: StoreStatus, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = int(code)
    if comment:
        ds.ErrorComment = comment[:64]  # LO: at most 64 characters
    return ds


class StoreHandler:
    """Callable bound to ``evt.EVT_C_STORE``; one instance shared by all association threads."""

    def __init__(self, ctx: ReceiveContext) -> None:
        self.ctx = ctx

    def __call__(self, event: evt.Event) -> Dataset:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        try:
            ds = event.dataset
            ensure_parsed(ds)
        except DECODE_ERRORS as exc:
            log.warning("from %s: cannot decode data set: %s", calling_ae, exc)
            return _status(StoreStatus.CANNOT_UNDERSTAND, "data set cannot be decoded")
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        study_uid = str(ds.get("StudyInstanceUID", ""))
        series_uid = str(ds.get("SeriesInstanceUID", ""))
        sop_class = str(ds.get("SOPClassUID", ""))
        request = event.request
        assert isinstance(request, C_STORE)  # bound to EVT_C_STORE only
        requested = str(request.AffectedSOPClassUID)
        requested_uid = str(request.AffectedSOPInstanceUID)
        for name, uid in (
            ("SOPInstanceUID", sop_uid),
            ("StudyInstanceUID", study_uid),
            ("SeriesInstanceUID", series_uid),
        ):
            if not is_valid_uid(uid):
                log.warning("from %s: rejected object with invalid %s %r", calling_ae, name, uid[:80])
                return _status(StoreStatus.CANNOT_UNDERSTAND, f"invalid {name}")
        if sop_class != requested or sop_uid != requested_uid:
            log.warning(
                "from %s: %s: data set SOP class/instance does not match the C-STORE request",
                calling_ae,
                sop_uid,
            )
            return _status(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP class/instance mismatch")
        refusal = _check_content(ds, sop_class, event.context.transfer_syntax)
        if refusal is not None:
            code, reason = refusal
            log.warning("from %s: %s (study %s) refused: %s", calling_ae, sop_uid, study_uid, reason)
            return _status(code, reason)

        data = event.encoded_dataset(include_meta=True)
        if len(data) > self.ctx.max_object_bytes:
            log.warning(
                "from %s: %s refused: %d bytes exceeds the maximum object size",
                calling_ae,
                sop_uid,
                len(data),
            )
            return _status(StoreStatus.OUT_OF_RESOURCES, "object exceeds maximum size")
        if self.ctx.spool.free_bytes() - len(data) < self.ctx.min_free_bytes:
            log.error("spool below free-disk watermark: refusing %s from %s with 0xA700", sop_uid, calling_ae)
            return _status(StoreStatus.OUT_OF_RESOURCES, "spool disk watermark reached")

        with self.ctx.sessions() as session:
            if session.get(Instance, sop_uid) is not None:
                # Same SOP Instance again: stored once, verified once; the sender still gets Success.
                log.info(
                    "from %s: duplicate %s (study %s) acknowledged, already stored",
                    calling_ae,
                    sop_uid,
                    study_uid,
                )
                return _status(StoreStatus.SUCCESS)
        try:
            rel = self.ctx.spool.write(study_uid, sop_uid, data)
        except SpoolError as exc:
            log.error("from %s: %s (study %s) not stored: %s", calling_ae, sop_uid, study_uid, exc)
            return _status(StoreStatus.OUT_OF_RESOURCES, "spool write failed")

        seg = is_seg(sop_class)
        try:
            with self.ctx.sessions.begin() as session:
                session.add(
                    Instance(
                        sop_instance_uid=sop_uid,
                        sop_class_uid=sop_class,
                        study_instance_uid=study_uid,
                        series_instance_uid=series_uid,
                        modality=str(ds.get("Modality", "")) or None,
                        transfer_syntax_uid=str(event.context.transfer_syntax),
                        path=rel.as_posix(),
                        size_bytes=len(data),
                        calling_ae=calling_ae,
                        is_seg=seg,
                    )
                )
                if seg:
                    session.add(
                        SegVerification(
                            seg_sop_instance_uid=sop_uid, study_instance_uid=study_uid, state=SegState.WAITING
                        )
                    )
        except IntegrityError:
            # A concurrent association stored the same instance first; the file is identical.
            log.info("from %s: duplicate %s (study %s) raced, already stored", calling_ae, sop_uid, study_uid)
            return _status(StoreStatus.SUCCESS)
        except SQLAlchemyError as exc:
            log.error(
                "from %s: %s (study %s) not recorded, database error: %s", calling_ae, sop_uid, study_uid, exc
            )
            return _status(StoreStatus.PROCESSING_FAILURE, "database unavailable")
        log.info(
            "stored %s %s (study %s) from %s", "SEG" if seg else "instance", sop_uid, study_uid, calling_ae
        )
        if self.ctx.on_stored is not None:
            self.ctx.on_stored()
        return _status(StoreStatus.SUCCESS)


def handle_echo(event: evt.Event) -> int:
    return int(StoreStatus.SUCCESS)
