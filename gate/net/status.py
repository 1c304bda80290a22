"""DIMSE status codes by name (PS3.4 Annex B.2 and PS3.7 Annex C), so no handler returns a bare hex."""

from __future__ import annotations

from enum import IntEnum


class StoreStatus(IntEnum):
    SUCCESS = 0x0000
    # Refused: Out of Resources — the sender should retry later (disk watermark, spool full).
    OUT_OF_RESOURCES = 0xA700
    # Error: Data Set does not match SOP Class.
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    # Error: Cannot understand — malformed data set, invalid UIDs.
    CANNOT_UNDERSTAND = 0xC000
    # Failure: Processing failure (PS3.7 C.4.3) — our own fault, e.g. the database is down.
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122


def is_transient(status: int) -> bool:
    """Should a failed send be retried? 0xA7xx (out of resources) and 0x0110/0x0212-style
    processing failures are the peer's temporary trouble; 0xA9xx and 0xCxxx are permanent."""
    if status >> 8 == 0xA7:
        return True
    if status in (0x0110, 0x0212, 0x0213, 0x0210):
        return True
    return False


def is_success(status: int) -> bool:
    # Warnings (0xB000 coercion, 0xB006, 0xB007) still mean the peer stored the object.
    return status == 0x0000 or status >> 12 == 0xB
