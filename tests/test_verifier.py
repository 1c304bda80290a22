"""The Verifier and its pure numerics: oracle scores, aggregation, thresholds, verdicts, input checks.

The "oracle" REC-Net here outputs its mask channel. On an image that is exactly the true mask (object
100, background 0) it paints the blanked strip back perfectly when, and only when, the SEG's mask is
right, which is the premise of arXiv 2310.16999 in its purest form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate.verify.inputs import SegmentMasks, VerificationInput
from gate.verify.modelcard import ModelCard
from gate.verify.recnet import CPU_PROVIDER, RecNetSession
from gate.verify.result import FrameScore, SegmentResult, Verdict
from gate.verify.ssim import blurred_strip_ssim
from gate.verify.strip import boundary_strip
from gate.verify.tiles import extract_tiles
from gate.verify.verifier import (
    Verifier,
    aggregate_segment,
    frame_inputs,
    frame_score,
    resolve_threshold,
    seg_verdict,
)
from tests.test_recnet import build_model

TILE = 16
SHAPE = (48, 56)
OBJECT = 100.0  # intensity of the object in modality units


def build_mask_model(path: Path, *, mask_gain: float = 1.0) -> Path:
    """output = clip(mask_gain * channel 1, 0, 1): the test REC-Net of test_recnet with no image term."""
    return build_model(path, image_gain=0.0, mask_gain=mask_gain)


def make_card(**overrides: object) -> ModelCard:
    fields: dict[str, object] = {
        "name": "recnet-test",
        "version": "0.1",
        "tile_size": TILE,
        "strip_width": 2,
        "threshold": 0.9,
        "thresholds": {"spleen": 0.5},
    }
    fields.update(overrides)
    return ModelCard.model_validate(fields)


@pytest.fixture
def session(tmp_path: Path) -> RecNetSession:
    path = build_mask_model(tmp_path / "oracle.onnx")
    return RecNetSession(path, make_card(), providers=[CPU_PROVIDER], batch_size=4, intra_op_threads=1)


def square(top: int, left: int, size: int = 14) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def image_of(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, OBJECT, 0.0)


def fs(uid: str, score: float, pixels: int) -> FrameScore:
    return FrameScore(source_sop_instance_uid=uid, score=score, strip_pixels=pixels)


# --- pure numerics -------------------------------------------------------------------------------


def test_frame_inputs_blank_the_strip_and_carry_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.random(SHAPE).astype(np.float32) + 0.1  # no pixel is 0 before blanking
    mask = square(10, 12)
    strip = boundary_strip(mask, 2)
    inputs = frame_inputs(image, mask, strip, TILE)
    assert inputs.batch.shape == (len(inputs.grid), 2, TILE, TILE) and inputs.batch.dtype == np.float32
    strip_tiles = extract_tiles(strip[None].astype(np.float32), inputs.grid)[:, 0] > 0
    mask_tiles = extract_tiles(mask[None].astype(np.float32), inputs.grid)[:, 0]
    image_tiles = extract_tiles(image[None], inputs.grid)[:, 0]
    np.testing.assert_array_equal(inputs.batch[:, 0][strip_tiles], 0.0)
    np.testing.assert_array_equal(inputs.batch[:, 0][~strip_tiles], image_tiles[~strip_tiles])
    np.testing.assert_array_equal(inputs.batch[:, 1], mask_tiles)


def test_oracle_reconstruction_scores_one_and_wrong_one_less() -> None:
    rng = np.random.default_rng(1)
    image = rng.random(SHAPE).astype(np.float32)
    mask = square(20, 20)
    strip = boundary_strip(mask, 2)
    inputs = frame_inputs(image, mask, strip, TILE)
    oracle = extract_tiles(image[None], inputs.grid)
    score, pixels = frame_score(inputs, oracle, sigma=1.5)
    assert score == pytest.approx(1.0, abs=1e-9)
    assert pixels == int(strip.sum()) > 0
    blurred, _ = frame_score(inputs, np.full_like(oracle, 0.5), sigma=1.5)
    assert blurred < 0.5


def test_aggregate_is_strip_weighted_and_keeps_the_worst_frame() -> None:
    result = aggregate_segment(3, "liver", [fs("1.2.1", 1.0, 100), fs("1.2.2", 0.5, 300)], 0.6)
    assert result.score == pytest.approx(0.625)  # not the unweighted 0.75
    assert (result.worst_frame_score, result.worst_frame_uid) == (0.5, "1.2.2")
    assert result.frames == 2 and result.verdict is Verdict.PASS
    assert (result.number, result.label, result.threshold) == (3, "liver", 0.6)
    assert aggregate_segment(3, "liver", result.frame_scores, 0.7).verdict is Verdict.FAIL


def test_score_equal_to_threshold_passes() -> None:
    assert aggregate_segment(1, "x", [fs("1", 0.75, 10)], 0.75).verdict is Verdict.PASS


def test_segment_without_frames_fails_with_zero() -> None:
    result = aggregate_segment(2, "kidney", [], 0.0)
    assert result.verdict is Verdict.FAIL  # even against a threshold of 0: nothing was verified
    assert (result.score, result.frames, result.worst_frame_uid) == (0.0, 0, "")


def test_threshold_precedence() -> None:
    card = make_card(threshold=0.9, thresholds={"liver": 0.8, "spleen": 0.7})
    assert resolve_threshold("liver", card, {"liver": 0.6}) == 0.6  # administrator first
    assert resolve_threshold("spleen", card, {"liver": 0.6}) == 0.7  # then the card's label
    assert resolve_threshold("heart", card, {"liver": 0.6}) == 0.9  # then the card's default
    assert resolve_threshold("heart", card, None) == 0.9


def _seg_result(score: float, verdict: Verdict) -> SegmentResult:
    return SegmentResult(1, "x", score, score, "1", 0.5, verdict, 1)


def test_seg_verdict_all_must_pass_and_score_is_min() -> None:
    good, bad = _seg_result(0.9, Verdict.PASS), _seg_result(0.4, Verdict.FAIL)
    assert seg_verdict([good, _seg_result(0.8, Verdict.PASS)]) == (Verdict.PASS, 0.8)
    assert seg_verdict([good, bad]) == (Verdict.FAIL, 0.4)
    assert seg_verdict([]) == (Verdict.FAIL, 0.0)


# --- the Verifier around a real ONNX session ------------------------------------------------------


def test_score_frame_right_mask_is_perfect_wrong_mask_is_not(session: RecNetSession) -> None:
    verifier = Verifier(session)
    truth = square(15, 18)
    right = verifier.score_frame(image_of(truth), truth, source_uid="1.2.3")
    assert right is not None
    assert right.score == pytest.approx(1.0, abs=1e-9)
    assert right.source_sop_instance_uid == "1.2.3"
    assert right.strip_pixels == int(boundary_strip(truth, 2).sum())
    wrong = verifier.score_frame(image_of(truth), square(19, 22))
    assert wrong is not None and wrong.score < 0.8


def test_score_frame_without_boundary_is_none(session: RecNetSession) -> None:
    verifier = Verifier(session)
    image = image_of(square(15, 18))
    assert verifier.score_frame(image, np.zeros(SHAPE, dtype=bool)) is None
    assert verifier.score_frame(image, np.ones(SHAPE, dtype=bool)) is None
    with pytest.raises(ValueError, match="mask shape"):
        verifier.score_frame(image, np.zeros((SHAPE[0], SHAPE[1] + 1), dtype=bool))


def _seg_input() -> VerificationInput:
    """Two source frames; 'liver' right on both, 'tumour' wrong on one, 'spleen' without any boundary."""
    truth_a, truth_b = square(10, 10), square(20, 30, size=16)
    images = {"1.9.1": image_of(truth_a), "1.9.2": image_of(truth_b)}
    return VerificationInput(
        seg_sop_instance_uid="1.9.100",
        study_instance_uid="1.9.0",
        images=images,
        segments=(
            SegmentMasks(1, "liver", {"1.9.1": truth_a, "1.9.2": truth_b}),
            SegmentMasks(2, "tumour", {"1.9.1": truth_a, "1.9.2": square(26, 36, size=16)}),
            SegmentMasks(3, "spleen", {"1.9.1": np.zeros(SHAPE, dtype=bool)}),
        ),
    )


def test_verify_whole_seg(session: RecNetSession) -> None:
    result = Verifier(session).verify(_seg_input())
    liver, tumour, spleen = result.segments
    assert liver.verdict is Verdict.PASS and liver.frames == 2
    assert liver.score == pytest.approx(1.0, abs=1e-9)
    assert tumour.verdict is Verdict.FAIL and tumour.worst_frame_uid == "1.9.2"
    a, b = tumour.frame_scores
    assert a.score == pytest.approx(1.0, abs=1e-9) and b.score < 0.8
    weighted = (a.score * a.strip_pixels + b.score * b.strip_pixels) / (a.strip_pixels + b.strip_pixels)
    assert tumour.score == pytest.approx(weighted)
    assert (spleen.verdict, spleen.score, spleen.frames, spleen.threshold) == (Verdict.FAIL, 0.0, 0, 0.5)
    assert result.verdict is Verdict.FAIL and result.score == 0.0
    assert (result.seg_sop_instance_uid, result.study_instance_uid) == ("1.9.100", "1.9.0")
    assert result.model.name == "recnet-test" and result.model.version == "0.1"
    assert result.model.sha256 == session.model_sha256 and result.model.provider == CPU_PROVIDER
    assert set(result.timings) == {"verify", "reconstruct", "ssim"}
    assert result.timings["reconstruct"] > 0 and result.timings["ssim"] > 0
    assert result.timings["verify"] >= result.timings["reconstruct"] + result.timings["ssim"]


def test_verify_passes_when_every_segment_passes(session: RecNetSession) -> None:
    inp = _seg_input()
    only_liver = VerificationInput(
        inp.seg_sop_instance_uid, inp.study_instance_uid, inp.images, inp.segments[:1]
    )
    result = Verifier(session).verify(only_liver)
    assert result.verdict is Verdict.PASS and result.score == pytest.approx(1.0, abs=1e-9)


def test_administrator_thresholds_override_the_card(session: RecNetSession) -> None:
    inp = _seg_input()
    tumour = inp.segments[1]
    score = (
        Verifier(session)
        .verify(VerificationInput(inp.seg_sop_instance_uid, inp.study_instance_uid, inp.images, (tumour,)))
        .score
    )
    lenient = Verifier(session, thresholds={"tumour": score - 0.01})
    result = lenient.verify(
        VerificationInput(inp.seg_sop_instance_uid, inp.study_instance_uid, inp.images, (tumour,))
    )
    assert result.verdict is Verdict.PASS and result.segments[0].threshold == pytest.approx(score - 0.01)
    with pytest.raises(ValueError, match="threshold"):
        Verifier(session, thresholds={"tumour": 1.5})


def test_verify_rejects_inconsistent_input(session: RecNetSession) -> None:
    verifier = Verifier(session)
    inp = _seg_input()
    bad_shape = SegmentMasks(1, "liver", {"1.9.1": np.zeros((SHAPE[0] - 1, SHAPE[1]), dtype=bool)})
    with pytest.raises(ValueError, match="differs from source 1.9.1"):
        verifier.verify(VerificationInput("1.9.100", "1.9.0", inp.images, (bad_shape,)))
    unknown = SegmentMasks(1, "liver", {"1.9.404": square(10, 10)})
    with pytest.raises(ValueError, match="1.9.404, which is not among the images"):
        verifier.verify(VerificationInput("1.9.100", "1.9.0", inp.images, (unknown,)))
    with pytest.raises(ValueError, match="not a 2-D frame"):
        verifier.verify(VerificationInput("1.9.100", "1.9.0", {"1.9.1": np.zeros((2, *SHAPE))}, ()))


# --- the ssim_gain score (raw strip SSIM minus the strip's blur ceiling) -----------------------------


def test_gain_score_is_raw_ssim_minus_the_blur_ceiling(tmp_path: Path) -> None:
    """The oracle paints a sharp edge back exactly: raw SSIM 1, and it beats a blur of the truth, whose
    SSIM on a sharp edge is well below 1; a wrong mask's gain is far lower and negative."""
    path = build_mask_model(tmp_path / "oracle.onnx")
    card = make_card(score="ssim_gain", threshold=0.0, thresholds={})
    verifier = Verifier(RecNetSession(path, card, providers=[CPU_PROVIDER], batch_size=4, intra_op_threads=1))
    truth = square(15, 18)
    image = image_of(truth)
    strip = boundary_strip(truth, 2)
    ceiling = blurred_strip_ssim(image / OBJECT, strip, sigma=card.ssim_sigma, blur_sigma=card.blur_sigma)
    right = verifier.score_frame(image, truth)
    assert right is not None and right.score == pytest.approx(1.0 - ceiling, abs=1e-6)
    assert 0.0 < right.score < 1.0 and right.ssim == pytest.approx(1.0, abs=1e-9)
    wrong = verifier.score_frame(image, square(19, 22))
    assert wrong is not None and wrong.score < 0.0 < right.score


def test_threshold_range_follows_the_score(tmp_path: Path) -> None:
    """A gain threshold may be negative down to -2; a raw SSIM one must lie in [-1, 1]."""
    path = build_mask_model(tmp_path / "oracle.onnx")
    gain = RecNetSession(path, make_card(score="ssim_gain"), providers=[CPU_PROVIDER], intra_op_threads=1)
    assert Verifier(gain, thresholds={"liver": -1.5}).threshold_for("liver") == -1.5
    with pytest.raises(ValueError, match="ssim_gain"):
        Verifier(gain, thresholds={"liver": -2.5})
    raw = RecNetSession(path, make_card(), providers=[CPU_PROVIDER], intra_op_threads=1)
    with pytest.raises(ValueError, match="ssim"):
        Verifier(raw, thresholds={"liver": -1.5})


def test_model_info_names_the_score(tmp_path: Path) -> None:
    path = build_mask_model(tmp_path / "oracle.onnx")
    gain = RecNetSession(path, make_card(score="ssim_gain"), providers=[CPU_PROVIDER], intra_op_threads=1)
    assert Verifier(gain).verify(_seg_input()).model.score == "ssim_gain"


def test_segment_keeps_the_raw_ssim_beside_its_score_when_every_frame_has_it() -> None:
    frames = [FrameScore("a", -0.1, 100, ssim=0.7), FrameScore("b", -0.3, 300, ssim=0.5)]
    segment = aggregate_segment(1, "liver", frames, threshold=-0.2)
    assert segment.score == pytest.approx(-0.25) and segment.ssim == pytest.approx(0.55)
    assert aggregate_segment(1, "liver", [*frames, fs("c", 0.2, 10)], threshold=-0.2).ssim is None
