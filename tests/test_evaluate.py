"""Metric helpers of gate.model.evaluate against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gate.model.evaluate import auroc, rankdata, reject_rate, roc_curve, spearman, threshold_for_false_reject


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
