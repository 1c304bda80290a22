"""Volumes and cases: the split is by volume, deterministic, and no volume is in two splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate.model.sources import (
    FIXED_SPLIT,
    ITK_DATA,
    SPLITS,
    load_image_label_pair,
    read_metaimage,
    split_of,
)


def test_split_is_deterministic_and_total() -> None:
    ids = [f"site/patient{i}" for i in range(300)]
    first = [split_of(v) for v in ids]
    assert first == [split_of(v) for v in ids]
    counts = {s: first.count(s) for s in SPLITS}
    assert all(counts[s] > 0 for s in SPLITS)
    assert 0.45 < counts["train"] / len(ids) < 0.75
    assert set(FIXED_SPLIT.values()) <= set(SPLITS)


def test_shipped_training_data_never_in_test() -> None:
    for volume, split in FIXED_SPLIT.items():
        if volume.startswith("icbm152/") and volume != "icbm152/sagittal":
            assert split == "train"
    assert split_of("pydicom/CT_small.dcm") == "train"


def test_cases_split_by_volume() -> None:
    assert (ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz").is_file(), (
        "make test installs insighttoolkit5-examples"
    )
    from gate.model.cases import load_cases

    seen: dict[str, str] = {}
    for split in ("val", "test"):
        cases = load_cases(split, sources=["itk", "threshold"], limit=400)
        assert cases, split
        for c in cases:
            assert split_of(c.volume) == split
            assert seen.setdefault(c.volume, split) == split  # no volume in two splits
            assert c.image.ndim == 2 and c.image.dtype == np.float32
            assert c.mask.shape == c.truth.shape == c.image.shape
            assert 0.0 <= c.dice <= 1.0
    again = load_cases("val", sources=["itk", "threshold"], limit=50)
    assert [c.mode for c in again] == [
        c.mode for c in load_cases("val", sources=["itk", "threshold"], limit=50)
    ]


def test_nifti_pair_and_metaimage(tmp_path: Path) -> None:
    import nibabel as nib

    image = np.random.default_rng(0).normal(size=(20, 24, 3)).astype(np.float32)
    label = np.zeros((20, 24, 3), np.uint8)
    label[5:10, 5:12, :] = 1
    label[12:16, 3:8, 1] = 2
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "lab.nii.gz")
    vol = load_image_label_pair(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz", {1: "liver"}, volume="p1")
    assert vol.image.shape == (3, 20, 24)
    assert vol.spacing == pytest.approx((0.8, 0.9))
    assert set(vol.labels) == {"liver", "label2"}
    assert vol.labels["label2"][1].sum() == 20 and not vol.labels["label2"][0].any()

    raw = (np.arange(12, dtype=np.uint16) * 100).reshape(3, 4)
    (tmp_path / "x.raw").write_bytes(raw.astype("<u2").tobytes())
    (tmp_path / "x.mhd").write_text(
        "ObjectType = Image\nNDims = 2\nDimSize = 4 3\nElementSpacing = 0.5 0.7\n"
        "ElementType = MET_USHORT\nElementDataFile = x.raw\n"
    )
    arr, spacing = read_metaimage(tmp_path / "x.mhd")
    assert np.array_equal(arr, raw) and spacing == (0.7, 0.5)
