"""Metric helpers of gate.model.evaluate against values computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gate.model.cases import GOOD, Case
from gate.model.evaluate import (
    ScoredCases,
    auroc,
    card_test_metrics,
    rankdata,
    record_in_card,
    reject_rate,
    roc_curve,
    spearman,
    summarize,
    threshold_for_false_reject,
)
from gate.model.failures import dice


def test_auroc_by_hand() -> None:
    # pairs (good, bad): (3,1) win, (3,2) win, (2,1) win, (2,2) tie -> (3 + 0.5) / 4
    assert auroc([3.0, 2.0], [1.0, 2.0]) == pytest.approx(3.5 / 4)
    assert auroc([1.0], [2.0]) == 0.0
    assert auroc([2.0, np.nan], [1.0]) == 1.0  # NaNs dropped
    assert math.isnan(auroc([], [1.0]))


def test_ranks_average_ties() -> None:
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1 2 3, y = 1 3 2: d^2 = 0 + 1 + 1 = 2 -> 1 - 6*2 / (3 * 8) = 0.5
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_reject_rate_and_threshold() -> None:
    assert reject_rate([0.1, 0.5, 0.9, np.nan], 0.5) == pytest.approx(0.5)  # 0.1 and NaN fail
    good = np.arange(1, 101, dtype=float)  # 1..100
    t = threshold_for_false_reject(good, 0.05)
    assert t == pytest.approx(np.quantile(good, 0.05))
    assert reject_rate(good, t) == pytest.approx(0.05)


def test_roc_curve_ends() -> None:
    frr, sens = roc_curve([0.9, 0.8], [0.1, 0.2])
    assert frr.min() == 0.0 and frr.max() == 1.0
    assert sens.min() == 0.0 and sens.max() == 1.0
    # a perfect score reaches sensitivity 1 with no false reject
    assert np.any((sens == 1.0) & (frr == 0.0))


def _scored(truth: np.ndarray, masks: list[np.ndarray], scores: list[float]) -> ScoredCases:
    image = np.zeros(truth.shape, np.float32)
    cases = [
        Case("s", "v", "disc", image, truth, m, GOOD if m is truth else "shift", dice(m, truth))
        for m in masks
    ]
    return ScoredCases(cases, {"shipped:ssim_gain": np.asarray(scores, np.float64)})


def test_summary_has_the_surface_criterion_and_goes_into_the_card(tmp_path: Path) -> None:
    """A score that orders masks by boundary error gets surface-distance AUROC 1 where Dice disagrees, and
    the card keeps every other field when its test figures are recorded."""
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    masks = [truth, np.roll(truth, 1, axis=1), np.roll(truth, 3, axis=1), np.roll(truth, 8, axis=1)]
    scored = _scored(truth, masks, [0.1, 0.0, -0.2, -0.5])
    distances = scored.surface_distance
    assert distances[0] == 0.0 and list(distances) == sorted(distances) and distances[1] < 1.0 < distances[2]
    summary = summarize(scored, scored, {"shipped:ssim_gain": -0.1})
    at_card = summary["scores"]["shipped:ssim_gain@card"]
    assert at_card["auroc_surface"] == 1.0 and at_card["spearman_surface"] == pytest.approx(1.0)
    assert at_card["false_reject_gt"] == 0.0 and at_card["sensitivity"] == 1.0  # only the 8-px shift is bad
    card = tmp_path / "recnet.card.json"
    card.write_text(json.dumps({"version": "9", "threshold": -0.1, "metrics": {"validation": {"x": 1}}}))
    record_in_card(card, card_test_metrics(summary, "ssim_gain"))
    data = json.loads(card.read_text())
    assert data["version"] == "9" and data["metrics"]["validation"] == {"x": 1}
    held_out = data["metrics"]["test_held_out"]
    assert held_out["score"] == "ssim_gain" and held_out["threshold"] == -0.1
    assert held_out["auroc_surface_distance_le_1px"] == 1.0


def test_a_small_run_on_real_volumes_writes_summary_scores_and_merges(tmp_path: Path) -> None:
    """`gate evaluate` end to end on a few real cases per split, with the shipped ONNX REC-Net."""
    from gate.model.evaluate import merge_runs, run

    onnx_dir = Path(__file__).resolve().parents[1] / "onnx_models"
    summary = run(tmp_path / "run", onnx_dir=onnx_dir, checkpoints={}, limit=24)
    scores = summary["scores"]
    assert {"shipped:ssim", "shipped:ssim_gain", "shipped:ssim_gain@card", "gradient"} <= set(scores)
    at_card = scores["shipped:ssim_gain@card"]
    assert at_card["threshold"] == pytest.approx(-0.1793)
    assert 0.0 <= at_card["auroc_surface"] <= 1.0 and 0.0 <= at_card["false_reject_gt"] <= 1.0
    saved = np.load(tmp_path / "run" / "scores.npz", allow_pickle=True)
    assert saved["surface_distance"].shape == saved["dice"].shape == (summary["cases"],)
    table = merge_runs([tmp_path / "run"], tmp_path / "merged", ["shipped:ssim_gain", "gradient"])
    assert "| shipped:ssim_gain |" in table and (tmp_path / "merged" / "roc_test.png").is_file()
