"""Tests for gate.synth.study and gate.synth.seg: the synthetic MR series and its good and bad SEGs."""

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, SegmentationStorage

from gate.synth.seg import make_seg
from gate.synth.study import (
    PIXEL_SPACING_MM,
    SLICE_THICKNESS_MM,
    StudyFiles,
    dice,
    make_phantom,
    write_demo,
    write_synthetic_study,
)

SEED = 3
N_SLICES = 10


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("binary"), seed=SEED, n_slices=N_SLICES)


@pytest.fixture(scope="module")
def fractional_study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(
        tmp_path_factory.mktemp("fractional"), seed=SEED, n_slices=N_SLICES, fractional=True
    )


def _seg_masks(path: Path, files: StudyFiles) -> dict[str, np.ndarray]:
    """Read a SEG back as label -> [n_sources, rows, cols] float, in source order."""
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        files.source_sop_instance_uids, segment_numbers=[1, 2], dtype=np.float32
    )
    labels = [seg.get_segment_description(n).segment_label for n in (1, 2)]
    return {label: pixels[..., i] for i, label in enumerate(labels)}


def test_images_are_a_consistent_mr_series(study: StudyFiles) -> None:
    datasets = [pydicom.dcmread(p) for p in study.image_paths]
    assert len(datasets) == N_SLICES
    assert [ds.SOPInstanceUID for ds in datasets] == study.source_sop_instance_uids
    assert len(set(study.source_sop_instance_uids)) == N_SLICES
    for k, (path, ds) in enumerate(zip(study.image_paths, datasets, strict=True)):
        assert path.name == f"{ds.SOPInstanceUID}.dcm" and path.parent.name == "images"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
        assert ds.StudyInstanceUID == study.study_instance_uid
        assert ds.SeriesInstanceUID == study.series_instance_uid
        assert ds.InstanceNumber == k + 1
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.PixelRepresentation) == (256, 256, 16, 0)
        assert ds.pixel_array.dtype == np.uint16
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([PIXEL_SPACING_MM] * 2)
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    assert np.allclose(np.diff(positions, axis=0), [0.0, 0.0, SLICE_THICKNESS_MM])


def test_painted_structures_are_visible_in_the_pixels(study: StudyFiles) -> None:
    phantom = make_phantom(SEED, N_SLICES)
    stored = np.stack([pydicom.dcmread(p).pixel_array for p in study.image_paths]).astype(np.float32)
    assert np.allclose(stored / 4000.0, phantom.images, atol=1e-3)
    lesion, cyst = phantom.masks["Lesion"], phantom.masks["Cyst"]
    assert lesion.any() and cyst.any()
    assert not cyst[0].any()  # ellipsoids: absent on an end slice
    widest = int(np.argmax(lesion.sum(axis=(1, 2))))
    ring = np.roll(lesion[widest], 20, axis=1) & ~lesion[widest]
    assert stored[widest][lesion[widest]].mean() > stored[widest][ring].mean() + 500


def test_segs_reference_every_source_instance(study: StudyFiles) -> None:
    for path in (study.good_seg_path, study.bad_seg_path):
        seg = hd.seg.segread(path)
        assert seg.SOPClassUID == SegmentationStorage and seg.Modality == "SEG"
        assert seg.StudyInstanceUID == study.study_instance_uid
        assert seg.SegmentationType == "BINARY"
        referenced = {
            item.ReferencedSOPInstanceUID
            for series in seg.ReferencedSeriesSequence
            if series.SeriesInstanceUID == study.series_instance_uid
            for item in series.ReferencedInstanceSequence
        }
        assert referenced == set(study.source_sop_instance_uids)
        per_frame = {
            source.ReferencedSOPInstanceUID
            for frame in seg.PerFrameFunctionalGroupsSequence
            for derivation in frame.DerivationImageSequence
            for source in derivation.SourceImageSequence
        }
        assert per_frame <= set(study.source_sop_instance_uids)
        descriptions = [seg.get_segment_description(n) for n in seg.segment_numbers]
        assert [d.segment_label for d in descriptions] == study.segment_labels
        assert all(d.algorithm_type.value == "AUTOMATIC" for d in descriptions)
        measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == pytest.approx([PIXEL_SPACING_MM] * 2)


def test_good_seg_holds_the_painted_masks(study: StudyFiles) -> None:
    phantom = make_phantom(SEED, N_SLICES)
    masks = _seg_masks(study.good_seg_path, study)
    for label in study.segment_labels:
        assert np.array_equal(masks[label] > 0, phantom.masks[label])


def test_bad_seg_gets_one_segment_clearly_wrong(study: StudyFiles) -> None:
    phantom = make_phantom(SEED, N_SLICES)
    masks = _seg_masks(study.bad_seg_path, study)
    label = study.bad_segment_label
    measured = dice(masks[label] > 0, phantom.masks[label])
    assert measured == pytest.approx(study.bad_dice)
    assert study.bad_dice < 0.5
    for other in set(study.segment_labels) - {label}:
        assert np.array_equal(masks[other] > 0, phantom.masks[other])


def test_fractional_seg_thresholds_back_to_the_masks(fractional_study: StudyFiles, study: StudyFiles) -> None:
    assert fractional_study.source_sop_instance_uids == study.source_sop_instance_uids
    phantom = make_phantom(SEED, N_SLICES)
    seg = hd.seg.segread(fractional_study.good_seg_path)
    assert seg.SegmentationType == "FRACTIONAL" and seg.MaximumFractionalValue == 255
    assert seg.SOPInstanceUID != hd.seg.segread(study.good_seg_path).SOPInstanceUID
    masks = _seg_masks(fractional_study.good_seg_path, fractional_study)
    for label in fractional_study.segment_labels:
        assert masks[label].max() <= 1.0
        assert np.array_equal(masks[label] > 0.5, phantom.masks[label])
        soft_edge = (masks[label] > 0) & (masks[label] < 1)
        assert soft_edge.any()
    bad = _seg_masks(fractional_study.bad_seg_path, fractional_study)[fractional_study.bad_segment_label]
    assert dice(bad > 0.5, phantom.masks["Lesion"]) == pytest.approx(fractional_study.bad_dice)


def test_same_seed_writes_the_same_study(tmp_path: Path, study: StudyFiles) -> None:
    again = write_synthetic_study(tmp_path, seed=SEED, n_slices=N_SLICES)
    assert again.source_sop_instance_uids == study.source_sop_instance_uids
    assert again.study_instance_uid == study.study_instance_uid
    assert again.bad_dice == study.bad_dice
    first, second = hd.seg.segread(study.good_seg_path), hd.seg.segread(again.good_seg_path)
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.PixelData == second.PixelData
    assert again.image_paths[3].read_bytes() == study.image_paths[3].read_bytes()
    other = make_phantom(SEED + 1, N_SLICES)
    assert not np.array_equal(other.masks["Lesion"], make_phantom(SEED, N_SLICES).masks["Lesion"])


def test_write_demo(tmp_path: Path) -> None:
    files = write_demo(tmp_path)
    assert len(files.image_paths) == 12
    assert files.good_seg_path == tmp_path / "seg_good.dcm" and files.bad_seg_path.exists()
    assert files.bad_dice < 0.5


def test_make_seg_validates_mask_shapes(study: StudyFiles) -> None:
    sources = [pydicom.dcmread(p) for p in study.image_paths]
    with pytest.raises(ValueError, match="shape"):
        make_seg(sources, {"Lesion": np.zeros((2, 256, 256), dtype=bool)})
    with pytest.raises(ValueError):
        make_seg(sources, {})
