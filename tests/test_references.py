"""Reading what a SEG references and decoding its segments (BINARY and FRACTIONAL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from gate.assemble.loader import load_verification_input
from gate.assemble.references import read_segment_masks, referenced_source_uids
from gate.errors import InvalidObjectError
from gate.synth.study import make_phantom, write_synthetic_study


@pytest.mark.parametrize("fractional", [False, True])
def test_masks_round_trip_through_the_seg(tmp_path: Path, fractional: bool) -> None:
    study = write_synthetic_study(tmp_path, seed=2, n_slices=5, fractional=fractional)
    seg = dcmread(study.good_seg_path)
    assert referenced_source_uids(seg) == study.source_sop_instance_uids
    sources = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, study.image_paths)}
    inp = load_verification_input(seg, sources)
    truth = make_phantom(seed=2, n_slices=5).masks
    assert [s.label for s in inp.segments] == study.segment_labels
    for segment in inp.segments:
        for i, uid in enumerate(study.source_sop_instance_uids):
            expected = truth[segment.label][i]
            got = segment.masks.get(uid, np.zeros_like(expected))
            assert np.array_equal(got, expected), (segment.label, i)
    # Pixel data arrive in modality units, one 2-D frame per referenced source.
    some = next(iter(inp.images.values()))
    assert some.ndim == 2 and some.dtype == np.float32


def test_seg_frames_of_another_size_than_the_sources_are_rejected(tmp_path: Path) -> None:
    study = write_synthetic_study(tmp_path, seed=2, n_slices=3)
    seg = dcmread(study.good_seg_path)
    shapes = {uid: (128, 128) for uid in study.source_sop_instance_uids}
    with pytest.raises(InvalidObjectError, match="frames are 256x256"):
        read_segment_masks(seg, shapes)


def test_seg_with_no_segments_is_rejected(tmp_path: Path) -> None:
    study = write_synthetic_study(tmp_path, seed=2, n_slices=3)
    seg = dcmread(study.good_seg_path)
    seg.SegmentSequence = []
    shapes = {uid: (256, 256) for uid in study.source_sop_instance_uids}
    with pytest.raises(InvalidObjectError):
        read_segment_masks(seg, shapes)


def test_references_from_per_frame_sequence_alone(tmp_path: Path) -> None:
    study = write_synthetic_study(tmp_path, seed=2, n_slices=3)
    seg = dcmread(study.good_seg_path)
    del seg.ReferencedSeriesSequence
    assert set(referenced_source_uids(seg)) <= set(study.source_sop_instance_uids)
    assert referenced_source_uids(seg)
