"""The shipped REC-Net on real heads it never saw: a correct mask passes, a clearly wrong one fails.

Data: the ITK example images (Debian package insighttoolkit5-examples), other subjects and scanners than
anything in training. ``KmeansTest_T1UCharRaw`` is a T1 head (2 mm) whose brain mask comes from ITK's
``KmeansTest_T1RawSkullStrip``; ``BrainT1Slice`` / ``BrainProtonDensitySlice`` (BrainWeb) come with ITK's
``VentricleModel``. Scored by the gate's own verifier against the model card's threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from gate.model.data import ITK_DATA
from gate.verify.inputs import SegmentMasks, VerificationInput
from gate.verify.recnet import load_shipped_model
from gate.verify.result import Verdict
from gate.verify.verifier import Verifier


@pytest.fixture(autouse=True, scope="module")
def _itk_data_installed() -> None:
    # Held-out real anatomy: `make test` installs Debian's insighttoolkit5-examples; never skip it.
    if not (ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz").is_file():
        pytest.fail(f"ITK example data missing under {ITK_DATA}: apt-get install insighttoolkit5-examples")


# Slices through the brain, every 6 mm, as a SEG of a brain segmentation would cover them.
T1_SLICES = range(18, 48, 3)


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(load_shipped_model())


def _brain_seg(shift: tuple[int, int]) -> VerificationInput:
    import nibabel as nib

    t1 = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz").dataobj, dtype=np.float32)
    brain = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1RawSkullStrip.nii.gz").dataobj) > 0
    images = {f"1.2.3.{z}": t1[:, :, z] for z in T1_SLICES}
    masks = {f"1.2.3.{z}": np.roll(brain[:, :, z], shift, axis=(0, 1)) for z in T1_SLICES}
    segment = SegmentMasks(number=1, label="brain", masks=masks)
    return VerificationInput("1.2.3.9", "1.2.3", images, (segment,))


def test_brain_seg_passes_and_shifted_brain_seg_fails(verifier: Verifier) -> None:
    good = verifier.verify(_brain_seg((0, 0)))
    shifted = verifier.verify(_brain_seg((7, 7)))  # ~10 px off on every slice
    assert good.verdict is Verdict.PASS, good.segments[0]
    assert shifted.verdict is Verdict.FAIL, shifted.segments[0]
    # Per slice, the true mask reconstructs better than the shifted one.
    for g, s in zip(good.segments[0].frame_scores, shifted.segments[0].frame_scores, strict=True):
        assert g.score > s.score, (g, s)


@pytest.mark.parametrize("name", ["BrainT1Slice.png", "BrainProtonDensitySlice.png"])
def test_ventricle_mask_passes_and_shifted_mask_fails(verifier: Verifier, name: str) -> None:
    from PIL import Image

    image = np.asarray(Image.open(ITK_DATA / name).convert("L"), dtype=np.float32)
    ventricle = np.asarray(Image.open(ITK_DATA / "VentricleModel.png")) > 127
    threshold = verifier.threshold_for("ventricle")
    good = verifier.score_frame(image, ventricle)
    assert good is not None and good.score >= threshold, (good, threshold)
    for shift, axis in [(10, 0), (-10, 0), (10, 1), (-10, 1)]:
        wrong = verifier.score_frame(image, np.roll(ventricle, shift, axis=axis))
        assert wrong is not None and wrong.score < threshold, (shift, axis, wrong, threshold)
