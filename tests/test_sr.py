"""The verification SR (TID 1500, Comprehensive 3D SR), read back with highdicom after a file round trip."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset, config, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from gate.report import build_verification_sr, codes, write_sr
from gate.verify.result import FrameScore, ModelInfo, SegmentResult, SegResult, Verdict

N_SLICES = 3
SIZE = 32
LIVER, TUMOUR = 1, 2


@pytest.fixture(autouse=True)
def strict_dicom() -> Iterator[None]:
    """Invalid DICOM values raise on reading and writing (as highdicom's own tests/conftest.py does)."""
    settings = config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    settings.reading_validation_mode = config.RAISE
    settings.writing_validation_mode = config.RAISE
    yield
    settings.reading_validation_mode, settings.writing_validation_mode = saved


# --- fixture factory: a small MR series and a two-segment SEG made from it ---------------------------------


def make_mr_series(n_slices: int = N_SLICES, size: int = SIZE) -> list[Dataset]:
    """Single-frame MR images of one patient, study and series, stacked along z, 2 mm apart."""
    study_uid, series_uid, frame_of_reference_uid = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    sources = []
    for index in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName = "Gate^Test"
        ds.PatientID = "QGATE-0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.StudyID = "1"
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = "ACC0001"
        ds.ReferringPhysicianName = ""
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.Manufacturer = "Synthetic"
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTrainLength = 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 2.0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = size
        ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 1000, (size, size), dtype=np.uint16).tobytes()
        sources.append(ds)
    return sources


def make_seg(sources: list[Dataset]) -> hd.seg.Segmentation:
    """A binary SEG: "Liver" on every slice, "Tumour" on the middle slice only."""
    mask = np.zeros((len(sources), SIZE, SIZE), dtype=np.uint8)
    mask[:, 8:24, 8:24] = LIVER
    mask[1, 12:18, 12:18] = TUMOUR
    algorithm = hd.AlgorithmIdentificationSequence(
        name="TestNet", version="1.0", family=dicom_codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=LIVER,
            segment_label="Liver",
            segmented_property_category=dicom_codes.SCT.Organ,
            segmented_property_type=dicom_codes.SCT.Liver,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(),
            tracking_id="Liver",
        ),
        hd.seg.SegmentDescription(
            segment_number=TUMOUR,
            segment_label="Tumour",
            segmented_property_category=dicom_codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=dicom_codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        ),
    ]
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Test AI",
        manufacturer_model_name="TestNet",
        software_versions="1.0",
        device_serial_number="0001",
    )


def make_result(seg: Dataset, sources: list[Dataset], *, tumour: Verdict = Verdict.FAIL) -> SegResult:
    """Liver passes (0.91 ≥ 0.80); Tumour fails (0.612 < 0.80) unless ``tumour`` says pass."""
    uids = [s.SOPInstanceUID for s in sources]
    liver = SegmentResult(
        number=LIVER,
        label="Liver",
        score=0.9134,
        worst_frame_score=0.8712,
        worst_frame_uid=uids[2],
        threshold=0.80,
        verdict=Verdict.PASS,
        frames=3,
        frame_scores=tuple(FrameScore(uid, s, 60) for uid, s in zip(uids, (0.93, 0.94, 0.8712), strict=True)),
    )
    tumour_score = 0.612 if tumour is Verdict.FAIL else 0.85
    tumour_result = SegmentResult(
        number=TUMOUR,
        label="Tumour",
        score=tumour_score,
        worst_frame_score=tumour_score,
        worst_frame_uid=uids[1],
        threshold=0.80,
        verdict=tumour,
        frames=1,
        frame_scores=(FrameScore(uids[1], tumour_score, 20),),
    )
    return SegResult(
        seg_sop_instance_uid=seg.SOPInstanceUID,
        study_instance_uid=seg.StudyInstanceUID,
        verdict=tumour,
        score=min(liver.score, tumour_score),
        segments=(liver, tumour_result),
        model=ModelInfo(name="REC-Net", version="0.3.1", sha256="ab" * 32, provider="CPUExecutionProvider"),
        timings={"verify": 1.25},
    )


@pytest.fixture(scope="module")
def study() -> tuple[list[Dataset], hd.seg.Segmentation]:
    sources = make_mr_series()
    return sources, make_seg(sources)


def read_back(sr: Dataset, tmp_path: Path) -> hd.sr.Comprehensive3DSR:
    path = tmp_path / "report.dcm"
    write_sr(sr, path)
    return hd.sr.srread(path)


def groups_by_number(
    sr: hd.sr.Comprehensive3DSR,
) -> dict[int, hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    groups = sr.content.get_volumetric_roi_measurement_groups()
    return {group.referenced_segment[0].referenced_segment_numbers[0]: group for group in groups}


# --- the SR as a clinician's viewer reads it --------------------------------------------------------------


def test_sr_is_comprehensive_3d_in_the_study_of_the_seg(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(build_verification_sr(make_result(seg, sources), seg, sources), tmp_path)

    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.SOPClassUID == Comprehensive3DSRStorage
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    assert sr.PatientID == sources[0].PatientID
    assert sr.PatientName == sources[0].PatientName
    assert sr.SeriesInstanceUID not in {seg.SeriesInstanceUID, sources[0].SeriesInstanceUID}
    assert sr.SeriesNumber == 9001
    assert sr.SeriesDescription == "SEG quality gate: FAILED"
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.content[0].ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.content[0].name == dicom_codes.cid7021.ImagingMeasurementReport


def test_evidence_lists_the_seg_and_its_sources(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(build_verification_sr(make_result(seg, sources), seg, sources), tmp_path)

    evidence = {sop_uid: (study_uid, sop_class) for study_uid, _, sop_uid, sop_class in sr.get_evidence()}
    assert evidence[seg.SOPInstanceUID] == (seg.StudyInstanceUID, seg.SOPClassUID)
    for source in sources:
        assert evidence[source.SOPInstanceUID] == (seg.StudyInstanceUID, MRImageStorage)
    assert len(evidence) == len(sources) + 1
    assert "PertinentOtherEvidenceSequence" not in sr


def test_one_measurement_group_per_segment_referencing_the_seg(study, tmp_path: Path) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    sr = read_back(build_verification_sr(result, seg, sources), tmp_path)

    groups = groups_by_number(sr)
    assert sorted(groups) == [LIVER, TUMOUR]
    for segment in result.segments:
        group = groups[segment.number]
        assert group[0].ContentTemplateSequence[0].TemplateIdentifier == "1411"
        referenced = group.referenced_segment
        assert referenced[0].referenced_sop_instance_uid == seg.SOPInstanceUID
        assert referenced[0].referenced_sop_class_uid == seg.SOPClassUID
        assert group.tracking_identifier == segment.label
        assert group.tracking_uid is not None
        assert group.method == codes.STRIP_SSIM_VERIFICATION
    # "Tumour" is drawn on the middle slice only, "Liver" on all three.
    source_uids = {
        n: [item.referenced_sop_instance_uid for item in g.referenced_segment[1:]] for n, g in groups.items()
    }
    assert source_uids[LIVER] == [s.SOPInstanceUID for s in sources]
    assert source_uids[TUMOUR] == [sources[1].SOPInstanceUID]
    # The SEG's own tracking UID is kept; a segment without one gets a stable derived UID.
    assert groups[LIVER].tracking_uid == seg.SegmentSequence[0].TrackingUID
    assert groups[LIVER].finding_type == dicom_codes.SCT.Liver
    assert groups[TUMOUR].finding_category == dicom_codes.SCT.MorphologicallyAbnormalStructure


def test_strip_ssim_and_worst_frame_are_measurements_with_private_code(study, tmp_path: Path) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    sr = read_back(build_verification_sr(result, seg, sources), tmp_path)

    groups = groups_by_number(sr)
    for segment in result.segments:
        measurements = groups[segment.number].get_measurements(name=codes.STRIP_SSIM)
        by_derivation = {m.derivation: m for m in measurements}
        assert set(by_derivation) == {codes.MEAN, codes.MINIMUM}
        mean, worst = by_derivation[codes.MEAN], by_derivation[codes.MINIMUM]
        assert mean.value == pytest.approx(segment.score, abs=1e-12)
        assert mean.unit == codes.UNITY
        assert mean.name.scheme_designator == codes.CODING_SCHEME_DESIGNATOR
        assert worst.value == pytest.approx(segment.worst_frame_score, abs=1e-12)
        assert [image.referenced_sop_instance_uid for image in worst.referenced_images] == [
            segment.worst_frame_uid
        ]


def test_failing_segment_is_evaluated_fail_and_the_other_pass(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(build_verification_sr(make_result(seg, sources), seg, sources), tmp_path)

    groups = groups_by_number(sr)
    evaluations = {
        number: group.get_qualitative_evaluations(name=codes.SEGMENTATION_QUALITY)
        for number, group in groups.items()
    }
    assert [e.value for e in evaluations[LIVER]] == [codes.PASS]
    assert [e.value for e in evaluations[TUMOUR]] == [codes.FAIL]


def test_top_level_evaluation_says_which_segment_failed_and_why(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(build_verification_sr(make_result(seg, sources), seg, sources), tmp_path)

    items = hd.sr.utils.find_content_items(sr, name=codes.QUALITATIVE_EVALUATIONS, recursive=True)
    assert len(items) == 1
    children = {item.ValueType: item for item in items[0].ContentSequence}
    coded = hd.sr.CodeContentItem.from_dataset(children["CODE"])
    assert coded.name == codes.SEGMENTATION_QUALITY
    assert coded.value == codes.FAIL
    text = children["TEXT"].TextValue
    assert "FAILED" in text
    assert 'segment 2 "Tumour"' in text
    assert "0.612" in text and "0.800" in text
    assert "Liver" not in text


def test_private_coding_scheme_is_declared(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(build_verification_sr(make_result(seg, sources), seg, sources), tmp_path)

    declared = {item.CodingSchemeDesignator: item for item in sr.CodingSchemeIdentificationSequence}
    item = declared[codes.CODING_SCHEME_DESIGNATOR]
    assert item.CodingSchemeDesignator.startswith("99")
    assert item.CodingSchemeName == codes.CODING_SCHEME_NAME
    assert item.CodingSchemeResponsibleOrganization == codes.CODING_SCHEME_RESPONSIBLE_ORGANIZATION


def test_observer_is_the_gate_as_a_device_with_the_model(study, tmp_path: Path) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    sr = read_back(build_verification_sr(result, seg, sources), tmp_path)

    (observer,) = sr.content.get_observer_contexts(observer_type=dicom_codes.DCM.Device)
    attributes = observer.observer_identifying_attributes
    assert attributes.name == "SEG quality gate"
    assert attributes.model_name == result.model.name
    assert attributes.serial_number == result.model.sha256
    procedures = hd.sr.utils.find_content_items(sr, name=dicom_codes.DCM.ProcedureReported)
    assert [hd.sr.CodeContentItem.from_dataset(p).value for p in procedures] == [
        codes.SEGMENTATION_VERIFICATION
    ]


def test_passing_seg(study, tmp_path: Path) -> None:
    sources, seg = study
    sr = read_back(
        build_verification_sr(make_result(seg, sources, tumour=Verdict.PASS), seg, sources), tmp_path
    )

    assert sr.SeriesDescription == "SEG quality gate: PASSED"
    for group in groups_by_number(sr).values():
        assert [e.value for e in group.get_qualitative_evaluations(name=codes.SEGMENTATION_QUALITY)] == [
            codes.PASS
        ]


def test_uids_are_stable_unless_given(study) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    first = build_verification_sr(result, seg, sources)
    again = build_verification_sr(result, seg, sources)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID

    uid, series_uid = generate_uid(), generate_uid()
    given = build_verification_sr(
        result,
        seg,
        sources,
        sop_instance_uid=uid,
        series_instance_uid=series_uid,
        series_number=7,
        instance_number=3,
        institution_name="General Hospital",
    )
    assert (given.SOPInstanceUID, given.SeriesInstanceUID) == (uid, series_uid)
    assert (given.SeriesNumber, given.InstanceNumber, given.InstitutionName) == (7, 3, "General Hospital")


def test_segment_without_scored_frames_has_no_worst_frame_measurement(study, tmp_path: Path) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    empty = dataclasses.replace(
        result.segments[0], frames=0, worst_frame_score=math.nan, worst_frame_uid="", frame_scores=()
    )
    result = dataclasses.replace(result, segments=(empty, result.segments[1]))
    sr = read_back(build_verification_sr(result, seg, sources), tmp_path)

    measurements = groups_by_number(sr)[LIVER].get_measurements(name=codes.STRIP_SSIM)
    assert [m.derivation for m in measurements] == [codes.MEAN]


# --- inputs are validated where they enter ----------------------------------------------------------------


def test_rejects_a_dataset_that_is_not_a_seg(study) -> None:
    sources, seg = study
    with pytest.raises(ValueError, match="Modality of the SEG must be 'SEG'"):
        build_verification_sr(make_result(seg, sources), sources[0], sources)


def test_rejects_a_result_about_another_seg(study) -> None:
    sources, seg = study
    result = dataclasses.replace(make_result(seg, sources), seg_sop_instance_uid=generate_uid())
    with pytest.raises(ValueError, match="result is about SEG"):
        build_verification_sr(result, seg, sources)


def test_rejects_a_segment_number_not_in_the_seg(study) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    stray = dataclasses.replace(result.segments[1], number=5)
    with pytest.raises(ValueError, match="segment number 5"):
        build_verification_sr(dataclasses.replace(result, segments=(result.segments[0], stray)), seg, sources)


def test_rejects_missing_source_instances(study) -> None:
    sources, seg = study
    with pytest.raises(ValueError, match=sources[2].SOPInstanceUID):
        build_verification_sr(make_result(seg, sources), seg, sources[:2])


def test_rejects_a_verdict_that_contradicts_its_segments(study) -> None:
    sources, seg = study
    result = dataclasses.replace(make_result(seg, sources), verdict=Verdict.PASS)
    with pytest.raises(ValueError, match="contradicts its segments"):
        build_verification_sr(result, seg, sources)


def test_rejects_a_score_that_is_not_finite(study) -> None:
    sources, seg = study
    result = make_result(seg, sources)
    broken = dataclasses.replace(result.segments[1], score=math.nan)
    with pytest.raises(ValueError, match="score must be finite"):
        build_verification_sr(
            dataclasses.replace(result, segments=(result.segments[0], broken)), seg, sources
        )


# --- writing ----------------------------------------------------------------------------------------------


def test_write_sr_replaces_the_file_and_leaves_no_temporary_file(study, tmp_path: Path) -> None:
    sources, seg = study
    path = tmp_path / "report.dcm"
    path.write_bytes(b"old")
    sr = build_verification_sr(make_result(seg, sources), seg, sources)

    write_sr(sr, path)

    assert dcmread(path).SOPInstanceUID == sr.SOPInstanceUID
    assert [p.name for p in tmp_path.iterdir()] == ["report.dcm"]


def test_write_sr_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "report.dcm"
    path.write_bytes(b"old")
    with pytest.raises((ValueError, AttributeError)):
        write_sr(Dataset(), path)  # no SOP Class / file meta: cannot be written as a DICOM file
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.dcm"]


def test_gain_score_is_reported_under_its_own_concept_and_name(study, tmp_path: Path) -> None:
    """A model card with score ssim_gain: the measurements and the sentence name the gain, not raw SSIM."""
    sources, seg = study
    result = make_result(seg, sources)
    tumour = dataclasses.replace(result.segments[1], ssim=0.55)
    result = dataclasses.replace(
        result,
        model=dataclasses.replace(result.model, score="ssim_gain"),
        segments=(result.segments[0], tumour),
    )
    sr = read_back(build_verification_sr(result, seg, sources), tmp_path)

    group = groups_by_number(sr)[TUMOUR]
    (raw,) = group.get_measurements(name=codes.STRIP_SSIM)  # the paper's measure, beside the score
    assert raw.derivation == codes.MEAN and raw.value == pytest.approx(0.55)
    assert groups_by_number(sr)[LIVER].get_measurements(name=codes.STRIP_SSIM) == []  # not known there
    gain = {m.derivation: m for m in group.get_measurements(name=codes.STRIP_SSIM_GAIN)}
    assert gain[codes.MEAN].value == pytest.approx(result.segments[1].score, abs=1e-12)
    items = hd.sr.utils.find_content_items(sr, name=codes.QUALITATIVE_EVALUATIONS, recursive=True)
    text = {item.ValueType: item for item in items[0].ContentSequence}["TEXT"].TextValue
    assert "scored strip SSIM gain over blurred original 0.612" in text
