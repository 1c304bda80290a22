"""Adversarial evaluation: the torch gate score equals the ONNX gate score; FGSM/PGD stay in bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch  # the train extra, installed by make test

from gate.model.attack import (
    RecNetTarget,
    attack_case,
    check_generator_matches_session,
    fgsm,
    pgd,
    success_rates,
)
from gate.model.export import export_onnx
from gate.model.strip_score import StripScorer, gate_frame_score, symmetric_index
from gate.model.unet import UNetGenerator
from gate.verify.modelcard import ModelCard
from gate.verify.normalize import normalize_robust
from gate.verify.recnet import RecNetSession
from gate.verify.verifier import Verifier

TILE = 32


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNetGenerator, RecNetSession]:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = UNetGenerator(base=8, depth=3).eval()
    path = tmp_path_factory.mktemp("onnx") / "recnet.onnx"
    export_onnx(gen, TILE, path)
    card = ModelCard(version="test", tile_size=TILE, strip_width=2, threshold=0.5)
    return gen, RecNetSession(path, card, intra_op_threads=1)


def _frame(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.uniform(0.3, 0.7) * shape[0], rng.uniform(0.3, 0.7) * shape[1]
    mask = ((yy - cy) / (0.3 * shape[0])) ** 2 + ((xx - cx) / (0.25 * shape[1])) ** 2 < 1
    raw = 200 + 300 * mask + rng.normal(0, 40, shape)
    return raw.astype(np.float32), mask


def test_symmetric_index_is_numpy_symmetric_padding() -> None:
    for size, before, after in [(5, 3, 2), (5, 12, 7), (1, 4, 4), (8, 0, 0)]:
        expected = np.pad(np.arange(size), (before, after), mode="symmetric")
        np.testing.assert_array_equal(symmetric_index(size, before, after), expected)


@pytest.mark.parametrize("shape", [(70, 90), (20, 24), (41, 100)])
def test_torch_score_equals_the_gate_onnx_score(
    model: tuple[UNetGenerator, RecNetSession], shape: tuple[int, int]
) -> None:
    gen, session = model
    raw, mask = _frame(shape, seed=shape[0])
    if shape == (41, 100):
        mask[:, :10] = True  # the mask touches the frame edge
    image = normalize_robust(raw)
    scorer = StripScorer(gen, session.card)
    plan = scorer.plan(mask)
    assert plan is not None
    with torch.no_grad():
        torch_score = float(scorer.score(torch.from_numpy(image), plan))
    onnx_score = gate_frame_score(session, image, mask)
    assert onnx_score is not None
    assert abs(torch_score - onnx_score) < 1e-3
    # gate_frame_score is the gate's own path minus normalisation.
    frame = Verifier(session).score_frame(raw, mask)
    assert frame is not None and frame.score == pytest.approx(onnx_score, abs=1e-9)


def test_the_checkpoint_check_accepts_its_own_export(model: tuple[UNetGenerator, RecNetSession]) -> None:
    gen, session = model
    assert check_generator_matches_session(gen, session) < 1e-4
    with pytest.raises(ValueError, match="differs"):
        check_generator_matches_session(UNetGenerator(base=8, depth=3).eval(), session)


def test_fgsm_with_zero_eps_changes_nothing(model: tuple[UNetGenerator, RecNetSession]) -> None:
    gen, session = model
    raw, mask = _frame((48, 48), seed=1)
    x0 = torch.from_numpy(normalize_robust(raw))
    scorer = StripScorer(gen, session.card)
    plan = scorer.plan(mask)
    assert plan is not None
    assert torch.equal(fgsm(x0, lambda x: scorer.score(x, plan), 0.0), x0)
    assert torch.equal(pgd(x0, lambda x: scorer.score(x, plan), 0.0), x0)


@pytest.mark.parametrize("eps", [1 / 255, 8 / 255])
def test_pgd_and_fgsm_stay_in_the_ball_and_in_range(
    model: tuple[UNetGenerator, RecNetSession], eps: float
) -> None:
    gen, session = model
    raw, mask = _frame((48, 56), seed=2)
    x0 = torch.from_numpy(normalize_robust(raw))
    scorer = StripScorer(gen, session.card)
    plan = scorer.plan(mask)
    assert plan is not None

    def objective(x: torch.Tensor) -> torch.Tensor:
        return scorer.score(x, plan)

    gen_rng = torch.Generator().manual_seed(0)
    for adv in (fgsm(x0, objective, eps), pgd(x0, objective, eps, steps=4, generator=gen_rng)):
        assert float((adv - x0).abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_pgd_ascends_a_simple_objective() -> None:
    x0 = torch.full((10, 10), 0.5)
    adv = pgd(x0, lambda x: x[:5].sum() - x[5:].sum(), 0.1, steps=5, random_start=False)
    assert torch.allclose(adv[:5], torch.full((5, 10), 0.6)) and torch.allclose(
        adv[5:], torch.full((5, 10), 0.4)
    )


def test_attack_case_reports_every_eps(model: tuple[UNetGenerator, RecNetSession]) -> None:
    gen, session = model
    raw, mask = _frame((40, 40), seed=3)
    target = RecNetTarget(gen, session)
    scores, e2e = attack_case(target, raw, mask, 0.99, (1 / 255, 4 / 255), steps=2, seed=0)
    assert set(scores) == {"noise", "fgsm", "pgd"} and set(scores["pgd"]) == {"1", "4"}
    clean = target.judge_raw(raw, mask)
    # The end-to-end judge re-normalises the perturbed raw pixels; the result stays close.
    for attack in scores:
        for key in scores[attack]:
            assert abs(scores[attack][key] - e2e[attack][key]) < 0.05
            assert abs(scores[attack][key] - clean) < 0.5
    assert success_rates([]) == []


SHIPPED_CARD = Path(__file__).resolve().parents[1] / "onnx_models" / "recnet.card.json"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "onnx_models" / "recnet.generator.pt"


def test_torch_score_equals_the_shipped_gate_score() -> None:
    from gate.model.train import load_generator
    from gate.verify.recnet import load_shipped_model

    session = load_shipped_model(SHIPPED_CARD.parent)
    gen, _, _ = load_generator(SHIPPED_CHECKPOINT)
    # The shipped torch weights are the ones the shipped ONNX was exported from.
    assert check_generator_matches_session(gen, session, atol=1.0) <= 1e-4
    scorer = StripScorer(gen, session.card)
    for seed, shape in enumerate([(96, 120), (150, 140)]):
        raw, mask = _frame(shape, seed=seed)
        image = normalize_robust(raw)
        plan = scorer.plan(mask)
        assert plan is not None
        with torch.no_grad():
            torch_score = float(scorer.score(torch.from_numpy(image), plan))
        onnx_score = gate_frame_score(session, image, mask)
        assert onnx_score is not None and abs(torch_score - onnx_score) < 1e-3


def test_report_tables(tmp_path: Path) -> None:
    from gate.model.attack import CaseResult
    from gate.model.attack_cli import write_report

    cases = [
        CaseResult(
            "recnet_strip_ssim",
            "itk",
            "v1",
            "brain",
            "shift_0.3R",
            0.5,
            0.7,
            0.6,
            {"pgd": {"4": 0.71}},
            {"pgd": {"4": 0.69}},
        ),
        CaseResult(
            "recnet_strip_ssim",
            "itk",
            "v1",
            "brain",
            "erode_0.15R",
            0.6,
            0.7,
            0.5,
            {"pgd": {"4": 0.6}},
            {"pgd": {"4": 0.6}},
        ),
    ]
    report = {
        "pgd_steps": 10,
        "torch_vs_onnx_max_abs": 1e-5,
        "counts": {"recnet_strip_ssim": {"bad": 3, "rejected_clean": 2, "attacked": 2}},
        "thresholds": {"recnet_strip_ssim": "0.7"},
        "success_rates": success_rates(cases),
        "cases": [c.__dict__ for c in cases],
        "machine": {"cpu": "test"},
        "command": "gate attack",
        "recnet_onnx": "m.onnx",
        "recnet_sha256": "0" * 64,
        "recnet_checkpoint": "c.pt",
        "baseline_checkpoint": "b.pt",
        "seconds": 1.0,
        "date": "today",
    }
    json_path, md_path = write_report(report, tmp_path)
    md = md_path.read_text()
    assert json_path.is_file()
    assert "| recnet_strip_ssim | PGD | 50.0 % (1/2) |" in md  # normalised domain
    assert "| recnet_strip_ssim | PGD | 0.0 % (0/2) |" in md  # end to end
    assert "| shift | 1/1 |" in md and "| erode | 0/1 |" in md
    assert "NOT met" in md

    from gate.model.attack_cli import record_adversarial_in_card

    card = tmp_path / "recnet.card.json"
    card.write_text(json.dumps({"version": "1", "metrics": {"validation": {"auroc": 0.9}}}))
    entry = record_adversarial_in_card(card, report["success_rates"], "recnet_strip_ssim", md_path)
    assert entry["pgd_success_rate"] == 0.5 and entry["dice_regression_pgd_success_rate"] is None
    data = json.loads(card.read_text())
    assert data["metrics"]["validation"] == {"auroc": 0.9} and data["metrics"]["adversarial"] == entry
