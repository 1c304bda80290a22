"""Build DICOM Segmentation (SEG) objects from source images and masks, as an AI engine would.

The gate receives SEGs made by segmentation engines; for the demo and the tests we make our own with
highdicom, which writes the references the gate relies on to assemble a case: ReferencedSeriesSequence
and, per frame, DerivationImageSequence/SourceImageSequence (PS3.3 C.8.20, C.7.6.16.2.6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib.metadata import version

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

# Segmented property (category, type) per label; SNOMED CT codes from PS3.16 CID 7150/7151.
_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
_ANATOMY = codes.SCT.AnatomicalStructure
_PROPERTIES: dict[str, tuple[Code, Code]] = {
    "lesion": (_ABNORMAL, codes.SCT.Lesion),
    "cyst": (_ABNORMAL, codes.SCT.Cyst),
    "tumor": (_ABNORMAL, codes.SCT.Neoplasm),
    "mass": (_ABNORMAL, codes.SCT.Mass),
    "liver": (_ANATOMY, codes.SCT.Liver),
    "kidney": (_ANATOMY, codes.SCT.Kidney),
    "spleen": (_ANATOMY, codes.SCT.Spleen),
}
_DEFAULT_PROPERTY = (codes.SCT.Tissue, codes.SCT.Tissue)
# From the installed distribution, not gate.__version__: under some editable installs ``gate``
# resolves as a namespace package without its __init__.
_SOFTWARE_VERSION = version("seg-quality-gate")


def segmented_property(label: str) -> tuple[Code, Code]:
    """Return the (category, type) codes for a segment label; generic "Tissue" for unknown labels."""
    return _PROPERTIES.get(label.strip().lower(), _DEFAULT_PROPERTY)


def make_seg(
    sources: Sequence[Dataset],
    masks: Mapping[str, np.ndarray],
    *,
    fractional: bool = False,
    series_number: int = 100,
    series_description: str = "AI segmentation",
    algorithm_name: str = "DemoSeg",
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    content_datetime: datetime | None = None,
) -> hd.seg.Segmentation:
    """Return a SEG of ``masks`` (label -> array [n_sources, rows, cols]) derived from ``sources``.

    Segments are numbered 1..n in the order of ``masks``, with AUTOMATIC algorithm type, as an AI
    engine's output would be. BINARY SEGs threshold float masks at 0.5; ``fractional=True`` stores
    them as FRACTIONAL/PROBABILITY with 255 levels, as engines that emit soft outputs do. Frames that
    are empty for every segment are omitted (highdicom's default), so tests must not assume one frame
    per source.

    Tracking UIDs derive from the source series and the label, so the same finding keeps its UID
    across SEGs of one series (PS3.3 C.8.20.4); pass the UIDs and ``content_datetime`` (default: now)
    for reproducible SEGs (highdicom still stamps a fresh Dimension Organization UID and contribution
    time, so the files are not byte-identical).
    """
    if not sources:
        raise ValueError("a SEG needs at least one source image")
    if not masks:
        raise ValueError("a SEG needs at least one segment")
    expected = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    stacked: list[np.ndarray] = []
    for label, mask in masks.items():
        array = np.asarray(mask)
        if array.shape != expected:
            raise ValueError(f"mask {label!r} has shape {array.shape}, sources give {expected}")
        if fractional:
            stacked.append(np.clip(array.astype(np.float32), 0.0, 1.0))
        else:
            stacked.append(array > 0.5 if array.dtype != bool else array)
    pixel_array = np.stack(stacked, axis=-1)

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name,
        version=_SOFTWARE_VERSION,
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = []
    for number, label in enumerate(masks, start=1):
        category, property_type = segmented_property(label)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=category,
                segmented_property_type=property_type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_id=label,
                tracking_uid=generate_uid(entropy_srcs=[str(sources[0].SeriesInstanceUID), label]),
            )
        )
    created = content_datetime or datetime.now()
    seg = hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixel_array,
        segmentation_type=(
            hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY
        ),
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer="seg-quality-gate",
        manufacturer_model_name=algorithm_name,
        software_versions=_SOFTWARE_VERSION,
        device_serial_number="0",
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        content_description=series_description[:64],
        content_label="SEGMENTATION",
        series_description=series_description,
        content_date=created.date(),
        content_time=created.time(),
        series_date=created.date(),
        series_time=created.time(),
    )
    seg.InstanceCreationDate = DA(created.date())  # highdicom stamps "now"; keep it reproducible
    seg.InstanceCreationTime = TM(created.time())
    return seg
