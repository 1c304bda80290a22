"""Adversarial evaluation: can a perturbation of the image make a bad segmentation pass?

arXiv 2310.16999 argues that judging a segmentation by a fixed measure (SSIM between the REC-Net
reconstruction and the image) resists adversarial inputs that fool a learned Dice regressor (Robinson et
al., MICCAI 2018). We test that claim with white-box L-infinity attacks on the normalised image
(intensity range [0, 1]; eps in {1, 2, 4, 8}/255):

* FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps;
* a control: random +-eps signs, no gradient;
* PGD (Kurakin et al. 2017; Madry et al. 2018): ``steps`` signed-gradient steps of eps/4 from the clean
  image, projection onto the eps-ball and [0, 1] after each; the best iterate is kept. No random start by
  default: uniform noise in the eps-ball lowers the SSIM of the strip by itself (noise is structure the
  reconstruction does not have), so a random start only wastes steps against this objective.

The objective is the verifier's pass score: the differentiable gate score of :mod:`gate.model.strip_score`
for the REC-Net, the predicted Dice for the baseline. The mask under test is fixed (the attacker changes
pixels, not the SEG). Success = the verifier's real score of the attacked frame crosses its threshold: the
gate's own numpy + ONNX path against the model card threshold, and the baseline's prediction against
0.8 (and against its validation Youden threshold). Only bad cases (true Dice < 0.8) that the verifier
rejected before the attack count. The perturbation is also carried back to the raw pixel values
(scaled by the robust range) and judged again after the gate's own re-normalisation ("end to end").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from gate.model.baseline import GOOD_DICE, DiceBaseline
from gate.model.strip_score import StripScorer, gate_frame_score
from gate.model.unet import UNetGenerator
from gate.verify.normalize import normalize_robust
from gate.verify.recnet import RecNetSession

log = logging.getLogger("gate.model")

EPSILONS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
PGD_STEPS = 10
# Stop PGD once the torch score clears the threshold by this much: the ONNX judge then agrees (the two
# differ by ~1e-5), and the remaining steps would not change the outcome.
EARLY_STOP_MARGIN = 2e-3

# "noise" is the control: a random +-eps sign pattern, no gradient. It tells adversarial successes apart
# from a verifier that merely flips under any perturbation of that size.
ATTACKS: tuple[str, ...] = ("noise", "fgsm", "pgd")

Objective = Callable[[torch.Tensor], torch.Tensor]


def project(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the L-infinity eps-ball around ``x0`` that is also a valid image in [0, 1]."""
    return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)


def _gradient(objective: Objective, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    value = objective(x)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad


def random_sign_noise(x0: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The control: x0 + eps * (random +-1 per pixel), clipped to [0, 1]."""
    signs = torch.randint(0, 2, x0.shape, generator=generator).to(x0.dtype) * 2 - 1
    return project(x0.detach() + eps * signs, x0.detach(), eps)


def fgsm(x0: torch.Tensor, objective: Objective, eps: float) -> torch.Tensor:
    """One signed-gradient ascent step of size ``eps`` (eps = 0 returns ``x0`` unchanged)."""
    if eps <= 0:
        return x0.detach().clone()
    _, grad = _gradient(objective, x0)
    return project(x0.detach() + eps * grad.sign(), x0.detach(), eps)


def pgd(
    x0: torch.Tensor,
    objective: Objective,
    eps: float,
    *,
    steps: int = PGD_STEPS,
    step_size: float | None = None,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    stop_at: float | None = None,
) -> torch.Tensor:
    """Projected gradient ascent in the eps-ball; returns the iterate with the highest objective."""
    x0 = x0.detach()
    if eps <= 0:
        return x0.clone()
    alpha = step_size if step_size is not None else eps / 4
    x = x0.clone()
    if random_start:
        noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype) * 2 - 1
        x = project(x0 + eps * noise, x0, eps)
    best_x, best = x, -float("inf")
    for _ in range(steps):
        value, grad = _gradient(objective, x)
        if value > best:
            best_x, best = x, value
        if stop_at is not None and value >= stop_at:
            return best_x
        x = project(x + alpha * grad.sign(), x0, eps)
    with torch.no_grad():
        if float(objective(x)) > best:
            best_x = x
    return best_x


class Target:
    """A verifier under attack: a differentiable pass score, its real judge, and its threshold."""

    name: str

    def prepare(self, mask: np.ndarray) -> Objective | None:
        """The objective for this mask (None when the verifier cannot score it)."""
        raise NotImplementedError

    def judge(self, image_norm: np.ndarray, mask: np.ndarray) -> float:
        """The verifier's own score of a normalised frame, as deployed."""
        raise NotImplementedError

    def judge_raw(self, image: np.ndarray, mask: np.ndarray) -> float:
        """The verifier's score of raw pixel values (normalised as the gate does)."""
        return self.judge(normalize_robust(image), mask)

    def threshold(self, structure: str) -> float:
        raise NotImplementedError


class RecNetTarget(Target):
    """The gate: its REC-Net verdict score (the card's: raw strip SSIM or its gain over the blur ceiling)
    judged by the ONNX session against the model card threshold."""

    def __init__(self, generator: UNetGenerator, session: RecNetSession) -> None:
        self.name = f"recnet_{session.card.score}"
        self.session = session
        self.scorer = StripScorer(generator, session.card)

    def prepare(self, mask: np.ndarray) -> Objective | None:
        plan = self.scorer.plan(mask)
        if plan is None:
            return None
        return lambda x: self.scorer.score(x, plan)

    def judge(self, image_norm: np.ndarray, mask: np.ndarray) -> float:
        score = gate_frame_score(self.session, image_norm, mask)
        return float("nan") if score is None else score

    def threshold(self, structure: str) -> float:
        return self.session.card.threshold_for(structure)


class BaselineTarget(Target):
    """The Dice regressor: predicted Dice against a fixed threshold (0.8, or its Youden threshold)."""

    def __init__(self, baseline: DiceBaseline, threshold: float, name: str) -> None:
        self.baseline = baseline
        self._threshold = threshold
        self.name = name

    def prepare(self, mask: np.ndarray) -> Objective | None:
        if not np.asarray(mask, dtype=bool).any():
            return None
        return lambda x: self.baseline.predict_normalized(x, mask)

    def judge(self, image_norm: np.ndarray, mask: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.baseline.predict_normalized(torch.from_numpy(image_norm), mask))

    def threshold(self, structure: str) -> float:
        return self._threshold


def check_generator_matches_session(
    generator: UNetGenerator, session: RecNetSession, atol: float = 1e-4
) -> float:
    """Max |torch - ONNX| on random tiles; raise when the checkpoint is not the shipped model's."""
    t = session.card.tile_size
    x = np.random.default_rng(0).random((4, 2, t, t), dtype=np.float32)
    x[:, 1] = x[:, 1] > 0.5
    with torch.no_grad():
        torch_out = generator(torch.from_numpy(x)).numpy()
    diff = float(np.abs(torch_out - session.reconstruct(x)).max())
    if diff > atol:
        raise ValueError(
            f"the torch checkpoint differs from the ONNX model by {diff:.2e} (> {atol}): "
            "pass the checkpoint the shipped model was exported from"
        )
    return diff


@dataclass
class CaseResult:
    """One bad case attacked on one verifier."""

    verifier: str
    source: str
    volume: str
    structure: str
    mode: str
    dice: float
    threshold: float
    clean_score: float
    # attack name -> eps (in 1/255 units, as str for JSON) -> attacked score (normalised domain / end to end)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    scores_end_to_end: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def attack_case(
    target: Target,
    image: np.ndarray,
    mask: np.ndarray,
    threshold: float,
    epsilons: Sequence[float],
    *,
    steps: int,
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """FGSM, PGD and the random-sign control at every eps on one frame, judged by the verifier."""
    objective = target.prepare(mask)
    scores: dict[str, dict[str, float]] = {name: {} for name in ATTACKS}
    e2e: dict[str, dict[str, float]] = {name: {} for name in ATTACKS}
    if objective is None:
        return scores, e2e
    image = np.asarray(image, dtype=np.float32)
    x0_np = normalize_robust(image)
    lo, hi = np.percentile(image.astype(np.float32), [1.0, 99.0])
    x0 = torch.from_numpy(x0_np)
    gen = torch.Generator().manual_seed(seed)
    for eps in epsilons:
        key = f"{eps * 255:g}"
        for name in ATTACKS:
            if name == "fgsm":
                adv = fgsm(x0, objective, eps)
            elif name == "noise":
                adv = random_sign_noise(x0, eps, gen)
            else:
                adv = pgd(
                    x0, objective, eps, steps=steps, generator=gen, stop_at=threshold + EARLY_STOP_MARGIN
                )
            adv_np = adv.detach().numpy().astype(np.float32)
            scores[name][key] = target.judge(adv_np, mask)
            # The same perturbation on the DICOM pixel values, re-normalised by the gate.
            raw = image + (adv_np - x0_np) * np.float32(hi - lo)
            e2e[name][key] = target.judge_raw(raw, mask)
    return scores, e2e


def run_attacks(
    targets: Sequence[Target],
    cases: Sequence[object],
    *,
    epsilons: Sequence[float] = EPSILONS,
    steps: int = PGD_STEPS,
    max_cases: int | None = None,
    seed: int = 0,
) -> tuple[list[CaseResult], dict[str, dict[str, int]]]:
    """Attack every bad case (true Dice < 0.8) that each verifier rejects before the attack.

    Returns the per-case results and, per verifier, how many bad cases there were, how many it
    rejected unattacked, and how many of those were attacked (``max_cases`` draws a seeded sample).
    """
    bad = [c for c in cases if float(c.dice) < GOOD_DICE]  # type: ignore[attr-defined]
    results: list[CaseResult] = []
    counts: dict[str, dict[str, int]] = {}
    for target in targets:
        eligible = []
        for case in bad:
            threshold = target.threshold(case.structure)  # type: ignore[attr-defined]
            clean = target.judge_raw(case.image, case.mask)  # type: ignore[attr-defined]
            if np.isfinite(clean) and clean < threshold:
                eligible.append((case, threshold, clean))
        rejected = len(eligible)
        if max_cases is not None and len(eligible) > max_cases:
            keep = np.random.default_rng(seed).choice(len(eligible), max_cases, replace=False)
            eligible = [eligible[i] for i in sorted(keep)]
        counts[target.name] = {"bad": len(bad), "rejected_clean": rejected, "attacked": len(eligible)}
        log.info(
            "%s: %d bad cases, %d rejected before the attack, attacking %d",
            target.name,
            len(bad),
            rejected,
            len(eligible),
        )
        for i, (case, threshold, clean) in enumerate(eligible):
            started = time.perf_counter()
            scores, e2e = attack_case(
                target,
                case.image,  # type: ignore[attr-defined]
                case.mask,  # type: ignore[attr-defined]
                threshold,
                epsilons,
                steps=steps,
                seed=seed + i,
            )
            results.append(
                CaseResult(
                    verifier=target.name,
                    source=case.source,  # type: ignore[attr-defined]
                    volume=case.volume,  # type: ignore[attr-defined]
                    structure=case.structure,  # type: ignore[attr-defined]
                    mode=case.mode,  # type: ignore[attr-defined]
                    dice=float(case.dice),  # type: ignore[attr-defined]
                    threshold=threshold,
                    clean_score=clean,
                    scores=scores,
                    scores_end_to_end=e2e,
                    seconds=time.perf_counter() - started,
                )
            )
            if (i + 1) % 10 == 0:
                log.info("%s: %d/%d cases attacked", target.name, i + 1, len(eligible))
    return results, counts


def success_rates(results: Sequence[CaseResult]) -> list[dict[str, object]]:
    """Per verifier, attack and eps: attacked cases, successes, rate (normalised domain and end to end)."""
    rows: list[dict[str, object]] = []
    for verifier in dict.fromkeys(r.verifier for r in results):
        mine = [r for r in results if r.verifier == verifier]
        for attack in ATTACKS:
            keys = list(dict.fromkeys(k for r in mine for k in r.scores.get(attack, {})))
            for key in keys:
                scored = [r for r in mine if key in r.scores.get(attack, {})]
                hits = sum(r.scores[attack][key] >= r.threshold for r in scored)
                hits_e2e = sum(r.scores_end_to_end[attack][key] >= r.threshold for r in scored)
                gain = [r.scores[attack][key] - r.clean_score for r in scored]
                rows.append(
                    {
                        "verifier": verifier,
                        "attack": attack,
                        "eps_255": float(key),
                        "attacked": len(scored),
                        "successes": int(hits),
                        "success_rate": hits / len(scored) if scored else float("nan"),
                        "success_rate_end_to_end": hits_e2e / len(scored) if scored else float("nan"),
                        "mean_score_gain": float(np.mean(gain)) if gain else float("nan"),
                    }
                )
    return rows


def results_to_json(results: Sequence[CaseResult]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]
