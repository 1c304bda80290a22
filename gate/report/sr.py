"""The verification report as a DICOM Comprehensive 3D SR: TID 1500 Measurement Report.

A clinician's viewer shows, per segment of the SEG, one TID 1411 "Volumetric ROI Measurements and
Qualitative Evaluations" group that references the segment (and the source images it was drawn on), with
the verdict score — strip SSIM, or its gain over the blur ceiling (TID 300 Measurement, private code,
unit "1") — and a Pass/Fail qualitative evaluation; and at
the top (TID 1500 row 12 "Qualitative Evaluations") the verdict on the whole SEG with a sentence that says
which segment failed and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

import highdicom as hd
from pydicom import Dataset, dcmwrite
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, generate_uid

from gate.report import codes
from gate.store.atomic import write_atomically
from gate.verify.result import SegmentResult, SegResult, Verdict

SEG_MODALITY = "SEG"
SEGMENTATION_SOP_CLASS_UIDS = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
    }
)

__all__ = ["build_verification_sr", "verdict_text", "write_sr"]


def build_verification_sr(
    result: SegResult,
    seg: Dataset,
    sources: Sequence[Dataset],
    *,
    series_number: int = 9001,
    instance_number: int = 1,
    manufacturer: str = "SEG quality gate",
    institution_name: str | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Build the Comprehensive 3D SR (TID 1500 "Imaging Measurement Report") for one verified SEG.

    The SR joins the SEG's study; patient and study attributes come from the evidence (``sources`` first,
    then ``seg``), all of which is listed in the Current Requested Procedure Evidence Sequence.

    Without ``sop_instance_uid`` / ``series_instance_uid`` the UIDs are derived from the SEG's SOP Instance
    UID and the model's SHA-256, so that building the report again after a crash yields the same instance
    instead of a duplicate in the PACS.

    Raises:
        ValueError: when ``seg`` is not a SEG, ``result`` is not about ``seg``, ``sources`` lack an instance
            the SEG references or belong to another study, a segment is not in the SEG, a score is not
            finite, or the verdict of the SEG contradicts its segments' verdicts.
    """
    _check_inputs(result, seg, sources)
    sources_by_uid = {source.SOPInstanceUID: source for source in sources}
    segment_items = {int(item.SegmentNumber): item for item in seg.SegmentSequence}
    source_uids_by_segment = _source_uids_by_segment(seg, sorted(segment_items), list(sources_by_uid))

    observation_context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=dicom_codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=_device_observer_uid(manufacturer, result),
                name=manufacturer,
                manufacturer_name=manufacturer,
                model_name=result.model.name,
                serial_number=result.model.sha256,
            ),
        )
    )
    groups = [
        _volumetric_roi_group(
            segment,
            seg=seg,
            segment_item=segment_items[segment.number],
            sources=[sources_by_uid[uid] for uid in source_uids_by_segment[segment.number]],
            sources_by_uid=sources_by_uid,
            result=result,
        )
        for segment in result.segments
    ]
    measurement_report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=codes.SEGMENTATION_VERIFICATION,
        imaging_measurements=groups,
        title=dicom_codes.cid7021.ImagingMeasurementReport,
    )
    measurement_report[0].ContentSequence.append(_qualitative_evaluations(result))

    passed = result.verdict is Verdict.PASS
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg],
        content=measurement_report,
        series_instance_uid=series_instance_uid or _derived_uid("series", result),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or _derived_uid("instance", result),
        instance_number=instance_number,
        manufacturer=manufacturer,
        institution_name=institution_name,
        is_complete=True,
        series_description=f"{manufacturer}: {'PASSED' if passed else 'FAILED'}"[:64],
        manufacturer_model_name=manufacturer,
        software_versions=_gate_version(),
        coding_schemes=[codes.coding_scheme_identification()],
    )


def write_sr(sr: Dataset, path: Path) -> None:
    """Write ``sr`` as a DICOM Part 10 file atomically (temp file in the same folder, fsync, rename)."""

    def write(stream: BinaryIO) -> None:
        dcmwrite(stream, sr, enforce_file_format=True)

    write_atomically(path, write)


def _check_inputs(result: SegResult, seg: Dataset, sources: Sequence[Dataset]) -> None:
    modality = seg.get("Modality")
    if modality != SEG_MODALITY:
        raise ValueError(f"Modality of the SEG must be {SEG_MODALITY!r}, got {modality!r}")
    if seg.get("SOPClassUID") not in SEGMENTATION_SOP_CLASS_UIDS:
        raise ValueError(f"SOP Class UID {seg.get('SOPClassUID')!r} is not a Segmentation Storage class")
    if result.seg_sop_instance_uid != seg.SOPInstanceUID:
        raise ValueError(
            f"result is about SEG {result.seg_sop_instance_uid}, but the SEG given is {seg.SOPInstanceUID}"
        )
    if result.study_instance_uid != seg.StudyInstanceUID:
        raise ValueError(
            f"result names study {result.study_instance_uid}, but SEG {seg.SOPInstanceUID} "
            f"is in study {seg.StudyInstanceUID}"
        )
    if not sources:
        raise ValueError(f"no source instances given for SEG {seg.SOPInstanceUID}")
    other_study = [s.SOPInstanceUID for s in sources if s.StudyInstanceUID != seg.StudyInstanceUID]
    if other_study:
        raise ValueError(
            f"source instances {other_study} are not in the study {seg.StudyInstanceUID} "
            f"of SEG {seg.SOPInstanceUID}"
        )
    source_uids = {s.SOPInstanceUID for s in sources}
    missing = [uid for uid in _referenced_source_uids(seg) if uid not in source_uids]
    if missing:
        raise ValueError(f"SEG {seg.SOPInstanceUID} references source instances not given: {missing}")

    if not result.segments:
        raise ValueError(f"result for SEG {seg.SOPInstanceUID} has no segments")
    seg_numbers = {int(item.SegmentNumber) for item in seg.get("SegmentSequence", [])}
    seen: set[int] = set()
    for segment in result.segments:
        if segment.number not in seg_numbers:
            raise ValueError(
                f"segment number {segment.number} ({segment.label!r}) is not in SEG {seg.SOPInstanceUID}, "
                f"which has segments {sorted(seg_numbers)}"
            )
        if segment.number in seen:
            raise ValueError(f"segment number {segment.number} appears twice in the result")
        seen.add(segment.number)
        for name in ("score", "threshold") + (("worst_frame_score",) if segment.frames > 0 else ()):
            value = getattr(segment, name)
            if not math.isfinite(value):
                raise ValueError(f"segment {segment.number} {name} must be finite, got {value!r}")
        if segment.frames > 0 and segment.worst_frame_uid not in source_uids:
            raise ValueError(
                f"worst frame {segment.worst_frame_uid} of segment {segment.number} is not a source instance"
            )
    any_failed = any(segment.verdict is Verdict.FAIL for segment in result.segments)
    expected = Verdict.FAIL if any_failed else Verdict.PASS
    if result.verdict is not expected:
        raise ValueError(
            f"SEG {seg.SOPInstanceUID} verdict {result.verdict.value!r} contradicts its segments "
            f"(a SEG passes iff every segment passes)"
        )


def _referenced_source_uids(seg: Dataset) -> list[str]:
    """SOP Instance UIDs in the SEG's Referenced Series Sequence (PS3.3 C.7.6.16 / C.8.20.2)."""
    return [
        str(instance.ReferencedSOPInstanceUID)
        for series in seg.get("ReferencedSeriesSequence", [])
        for instance in series.get("ReferencedInstanceSequence", [])
    ]


def _source_uids_by_segment(
    seg: Dataset, segment_numbers: Sequence[int], source_uids: Sequence[str]
) -> dict[int, list[str]]:
    """Per segment number, the source instances its frames were derived from, in ``source_uids`` order.

    Read from each frame's Derivation Image Sequence (PS3.3 C.7.6.16.2.6); a frame without Segment
    Identification (a Label Map SEG) counts for every segment. A segment with no such reference (an empty
    segment, or a SEG without derivation references) falls back to all instances the SEG references.
    """
    shared = seg.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    found: dict[int, set[str]] = {number: set() for number in segment_numbers}
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        identification = frame.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence"
        )
        numbers = (
            [int(identification[0].ReferencedSegmentNumber)] if identification else list(segment_numbers)
        )
        derivations = frame.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []
        for derivation in derivations:
            for source in derivation.get("SourceImageSequence", []):
                for number in numbers:
                    if number in found:
                        found[number].add(str(source.ReferencedSOPInstanceUID))
    referenced = set(_referenced_source_uids(seg)) or set(source_uids)
    return {
        number: [uid for uid in source_uids if uid in (found[number] or referenced)]
        for number in segment_numbers
    }


def _volumetric_roi_group(
    segment: SegmentResult,
    *,
    seg: Dataset,
    segment_item: Dataset,
    sources: Sequence[Dataset],
    sources_by_uid: dict[str, Dataset],
    result: SegResult,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """TID 1411 for one segment: its verdict score (mean and worst frame) and the Pass/Fail evaluation."""
    concept = score_concept(result.model.score)
    measurements = [
        hd.sr.Measurement(
            name=concept,
            value=float(segment.score),
            unit=codes.UNITY,
            derivation=codes.MEAN,
        )
    ]
    if concept != codes.STRIP_SSIM and segment.ssim is not None:
        # The paper's raw strip SSIM beside the verdict score, so a reader can see both.
        measurements.append(
            hd.sr.Measurement(
                name=codes.STRIP_SSIM, value=float(segment.ssim), unit=codes.UNITY, derivation=codes.MEAN
            )
        )
    if segment.frames > 0:
        measurements.append(
            hd.sr.Measurement(
                name=concept,
                value=float(segment.worst_frame_score),
                unit=codes.UNITY,
                derivation=codes.MINIMUM,
                referenced_images=[
                    hd.sr.SourceImageForMeasurement.from_source_image(sources_by_uid[segment.worst_frame_uid])
                ],
            )
        )
    tracking_uid = segment_item.get("TrackingUID") or generate_uid(
        entropy_srcs=["tracking", seg.SOPInstanceUID, str(segment.number)]
    )
    finding_type = _first_code(segment_item, "SegmentedPropertyTypeCodeSequence")
    finding_category = _first_code(segment_item, "SegmentedPropertyCategoryCodeSequence")
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=segment.label),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=segment.number,
            source_images=[hd.sr.SourceImageForSegmentation.from_source_image(s) for s in sources],
        ),
        finding_type=finding_type,
        finding_category=finding_category,
        method=codes.STRIP_SSIM_VERIFICATION,
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=result.model.name,
            version=result.model.version,
            parameters=[
                f"{concept.meaning} threshold {segment.threshold:.4f}",
                f"Scored frames {segment.frames}",
                f"Model SHA-256 {result.model.sha256}",
                f"Execution provider {result.model.provider}",
            ],
        ),
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.SEGMENTATION_QUALITY, value=_verdict_code(segment.verdict))
        ],
    )


def _qualitative_evaluations(result: SegResult) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12 "Qualitative Evaluations": the verdict on the whole SEG, coded and in words."""
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.CodeContentItem(
                name=codes.SEGMENTATION_QUALITY,
                value=_verdict_code(result.verdict),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
            hd.sr.TextContentItem(
                name=codes.SEGMENTATION_QUALITY,
                value=verdict_text(result),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
        ]
    )
    return container


def verdict_text(result: SegResult) -> str:
    """One sentence per failing segment, for the clinician reading the SR."""
    failed = [s for s in result.segments if s.verdict is Verdict.FAIL]
    if not failed:
        return (
            f"The segmentation passed verification: all {len(result.segments)} segments reached their "
            f"{score_name(result.model.score)} threshold (lowest score {result.score:.3f})."
        )
    reasons = "; ".join(_failure_reason(segment, score_name(result.model.score)) for segment in failed)
    return (
        f"The segmentation FAILED verification and was held back: {len(failed)} of "
        f"{len(result.segments)} segments failed: {reasons}."
    )


def score_concept(score: str) -> Code:
    """The SR concept of the verdict score the model card prescribes (raw strip SSIM when unknown)."""
    return codes.STRIP_SSIM_GAIN if score == "ssim_gain" else codes.STRIP_SSIM


def score_name(score: str) -> str:
    """The verdict score in words for the clinician's sentence, e.g. "strip SSIM"."""
    meaning = str(score_concept(score).meaning)
    return meaning[0].lower() + meaning[1:]


def _failure_reason(segment: SegmentResult, score: str) -> str:
    reason = (
        f'segment {segment.number} "{segment.label}" scored {score} {segment.score:.3f}, '
        f"below its threshold {segment.threshold:.3f}"
    )
    if segment.frames > 0:
        reason += (
            f" (worst frame {segment.worst_frame_score:.3f}, SOP Instance UID {segment.worst_frame_uid})"
        )
    return reason


def _verdict_code(verdict: Verdict) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept.from_code(codes.PASS if verdict is Verdict.PASS else codes.FAIL)


def _first_code(item: Dataset, keyword: str) -> hd.sr.CodedConcept | None:
    sequence = item.get(keyword)
    return hd.sr.CodedConcept.from_dataset(sequence[0]) if sequence else None


def _device_observer_uid(manufacturer: str, result: SegResult) -> UID:
    """Stable per gate and model, so that every report of the same device names the same observer."""
    return generate_uid(entropy_srcs=["device", manufacturer, result.model.name, result.model.sha256])


def _derived_uid(kind: str, result: SegResult) -> UID:
    return generate_uid(entropy_srcs=["sr", kind, result.seg_sop_instance_uid, result.model.sha256])


def _gate_version() -> str:
    """Software Versions (0018,1020) of the equipment that made the SR: this package."""
    try:
        return metadata.version("seg-quality-gate")
    except metadata.PackageNotFoundError:
        return "unknown"
