"""The Dice-regression baseline (Robinson et al. 2018 style): shapes, range, a short training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # the train extra, installed by make test

from gate.model.baseline import (
    CROP_SIZE,
    BaselineConfig,
    DiceBaseline,
    DiceRegressor,
    crop_box,
    fit,
    load_baseline,
    metrics,
    prepare,
    regressor_input,
)


@dataclass(frozen=True)
class _Case:
    image: np.ndarray
    mask: np.ndarray
    dice: float


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _cases(n: int, seed: int = 0) -> list[_Case]:
    """Discs on noise; the mask under test is the disc shifted by a random amount."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:80, :90]
    cases = []
    for _ in range(n):
        cy, cx, r = rng.uniform(30, 50), rng.uniform(30, 60), rng.uniform(8, 18)
        truth = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image = (100 + 80 * truth + rng.normal(0, 10, truth.shape)).astype(np.float32)
        dy, dx = rng.integers(-8, 9, 2)
        mask = np.roll(truth, (int(dy), int(dx)), axis=(0, 1))
        cases.append(_Case(image, mask, _dice(mask, truth)))
    return cases


def test_forward_shape_and_range() -> None:
    model = DiceRegressor().eval()
    x = torch.rand(5, 2, CROP_SIZE, CROP_SIZE)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (5,)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_crop_reaches_past_the_frame_by_mirroring() -> None:
    mask = np.zeros((40, 50), dtype=bool)
    mask[0:6, 44:50] = True  # in a corner: the square crop reaches past two edges
    r0, c0, h, w = crop_box(mask)  # type: ignore[misc]
    assert h == w >= 32 and r0 < 0 and c0 + w > 50
    image = torch.rand(40, 50, requires_grad=True)
    x = regressor_input(image, mask)
    assert x.shape == (2, CROP_SIZE, CROP_SIZE)
    x[0].sum().backward()  # differentiable in the image, for the attack
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


def test_short_training_runs_and_predicts_in_range(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cases = _cases(24)
    x, y = prepare(cases)
    assert x.shape == (24, 2, CROP_SIZE, CROP_SIZE) and y.shape == (24,)
    config = BaselineConfig(out_dir=tmp_path, epochs=3, batch_size=8, max_minutes=None, base_channels=8)
    model, record = fit(x[:16], y[:16], x[16:], y[16:], config)
    assert len(record.epochs) == 3 and all(np.isfinite(e["train_mse"]) for e in record.epochs)
    assert record.epochs[-1]["train_mse"] < record.epochs[0]["train_mse"] * 1.5
    path = tmp_path / "b.pt"
    torch.save({"config": config.to_dict(), "model": model.state_dict(), "record": {}}, path)
    baseline = load_baseline(path)
    assert isinstance(baseline, DiceBaseline)
    for case in cases[:4]:
        p = baseline.predict_dice(case.image, case.mask)
        assert 0.0 <= p <= 1.0
    assert 0.0 <= baseline.predict_dice(cases[0].image, np.zeros_like(cases[0].mask)) <= 1.0


def test_metrics_of_a_perfect_regressor() -> None:
    dice = np.array([0.95, 0.9, 0.5, 0.3])
    m = metrics(dice.copy(), dice, 0.8)
    assert m["mae"] == 0.0 and m["auroc"] == 1.0 and m["accuracy"] == 1.0
