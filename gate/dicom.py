"""SOP classes and dataset helpers the gate needs by name."""

from __future__ import annotations

from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    LabelMapSegmentationStorage,
    SegmentationStorage,
)

SEG_SOP_CLASSES: frozenset[str] = frozenset({str(SegmentationStorage), str(LabelMapSegmentationStorage)})
SR_SOP_CLASS: str = str(Comprehensive3DSRStorage)


def is_seg(sop_class_uid: str) -> bool:
    return sop_class_uid in SEG_SOP_CLASSES
