"""SQLAlchemy 2.0 models: what the gate received, what it concluded, what it must still send.

The schema is owned by Alembic (``migrations/``); these classes must match the latest revision.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)  # PS3.5 9.1: a UID is at most 64 characters


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class SegState(StrEnum):
    """Where a SEG is in the flow receive → assemble → verify → record → route."""

    WAITING = "waiting"  # received, some source instances not yet stored
    VERIFIED = "verified"  # verdict recorded (see SegVerification.verdict)
    INCOMPLETE = "incomplete"  # sources still missing after the configured wait
    ERROR = "error"  # could not be verified (malformed SEG, unreadable source); reason says why


class Disposition(StrEnum):
    """What the gate did with a SEG after its verdict."""

    FORWARDING = "forwarding"  # pass: the SEG is in the outbox to the PACS
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"  # fail / incomplete / error: held back
    DISCARDED = "discarded"  # an operator discarded it (`gate discard`): its spool file is deleted


class SendState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent refusal or attempts exhausted: needs an operator
    CANCELLED = "cancelled"  # an operator discarded the SEG before this send was delivered


class Instance(Base):
    """A DICOM instance the gate acknowledged: its file in the spool and the keys to find it."""

    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)  # relative to the spool directory
    size_bytes: Mapped[int] = mapped_column(Integer)
    calling_ae: Mapped[str] = mapped_column(String(16))
    is_seg: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SegVerification(Base):
    """One row per received SEG: its state, verdict, model and timings."""

    __tablename__ = "seg_verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seg_sop_instance_uid: Mapped[str] = mapped_column(
        UID, ForeignKey("instances.sop_instance_uid"), unique=True
    )
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=SegState.WAITING)
    verdict: Mapped[str | None] = mapped_column(String(8))
    score: Mapped[float | None] = mapped_column(Float)
    disposition: Mapped[str | None] = mapped_column(String(16))
    referenced_uids: Mapped[list[str] | None] = mapped_column(JSON)
    missing_uids: Mapped[list[str] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report_path: Mapped[str | None] = mapped_column(Text)
    sr_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    segments: Mapped[list[SegmentScore]] = relationship(
        back_populates="verification", cascade="all, delete-orphan", order_by="SegmentScore.segment_number"
    )


class SegmentScore(Base):
    """Per-segment score and verdict of a verification."""

    __tablename__ = "segment_scores"
    __table_args__ = (UniqueConstraint("verification_id", "segment_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verification_id: Mapped[int] = mapped_column(ForeignKey("seg_verifications.id", ondelete="CASCADE"))
    segment_number: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    worst_frame_score: Mapped[float] = mapped_column(Float)
    worst_frame_uid: Mapped[str] = mapped_column(UID)
    threshold: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(8))
    frames: Mapped[int] = mapped_column(Integer)

    verification: Mapped[SegVerification] = relationship(back_populates="segments")


class OutboxSend(Base):
    """A durable send: one object to one destination, retried until delivered or refused for good."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seg_sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)  # the SEG this send is about
    sop_instance_uid: Mapped[str] = mapped_column(UID)  # the object sent (the SEG or its SR)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)  # absolute path of the file to send
    destination: Mapped[str] = mapped_column(String(32))  # a key of Settings.destinations
    state: Mapped[str] = mapped_column(String(16), index=True, default=SendState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditKind(StrEnum):
    ASSOCIATION_ACCEPTED = "association_accepted"
    ASSOCIATION_REJECTED = "association_rejected"
    RELEASE = "release"  # an operator forwarded a quarantined SEG
    DISCARD = "discard"  # an operator discarded a SEG
    RETRY = "retry"  # an operator re-queued failed sends
    CONFIG_CHANGED = "config_changed"


class AuditEvent(Base):
    """Who did what, when: associations, operator actions, configuration changes."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(128))  # calling AE title, or the operator's name
    peer_host: Mapped[str | None] = mapped_column(String(64))
    subject_uid: Mapped[str | None] = mapped_column(UID)  # the SEG concerned, if any
    detail: Mapped[str | None] = mapped_column(Text)  # why / what changed
