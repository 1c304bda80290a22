"""The Dice-regression verifier the paper argues against (Robinson et al., MICCAI 2018 style).

A small CNN looks at the normalised image and the mask under test, cropped around the mask's bounding
box and resized to a fixed size, and regresses the mask's Dice against the (unknown) ground truth. The
gate's method (arXiv 2310.16999) replaces this learned regression with a fixed measure, SSIM between a
REC-Net reconstruction and the image; this baseline is what it is compared with, on accuracy and on
adversarial robustness (:mod:`gate.model.attack`).

The crop is a differentiable torch function of the normalised image, so the attack can follow the
predicted Dice back to the pixels. Normalisation is the gate's (:func:`gate.verify.normalize.normalize_robust`
on the whole frame). Trained on ``load_cases("train")`` (good masks and failure modes, target = true
Dice), best epoch chosen on ``"val"`` by mean absolute error; seeded; CPU-sized.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gate.model.strip_score import symmetric_index
from gate.verify.normalize import normalize_robust

log = logging.getLogger("gate.model")

CROP_SIZE = 64  # side of the resized crop the CNN sees
CROP_MARGIN = 0.25  # context around the mask bbox, as a fraction of its longer side, each way
MIN_CROP_SIDE = 32  # pixels: a tiny mask still gets some surroundings
GOOD_DICE = 0.8  # the default good/bad boundary of the evaluation (issue 3)
CHECKPOINT_NAME = "dice_regression.pt"


class CaseLike(Protocol):
    """The fields of :class:`gate.model.cases.Case` the baseline reads."""

    @property
    def image(self) -> np.ndarray: ...
    @property
    def mask(self) -> np.ndarray: ...
    @property
    def dice(self) -> float: ...


def crop_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Square box (row0, col0, side, side) around the mask bbox with margin; may reach past the frame."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h = int(rows[-1] - rows[0] + 1)
    w = int(cols[-1] - cols[0] + 1)
    side = max(MIN_CROP_SIDE, int(math.ceil(max(h, w) * (1 + 2 * CROP_MARGIN))))
    r0 = int(rows[0]) + h // 2 - side // 2
    c0 = int(cols[0]) + w // 2 - side // 2
    return r0, c0, side, side


def _crop_indices(size: int, start: int, length: int) -> torch.Tensor:
    """Frame indices of positions start..start+length-1, mirrored beyond the frame as the gate's tiles are."""
    before = max(0, -start)
    after = max(0, start + length - size)
    full = symmetric_index(size, before, after)
    return torch.from_numpy(full[start + before : start + before + length])


def regressor_input(image_norm: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """[2, CROP_SIZE, CROP_SIZE]: the normalised image and the mask, cropped around the mask and resized.

    Differentiable in ``image_norm`` [H, W]; an empty mask gives zeros.
    """
    box = crop_box(mask)
    if box is None:
        return torch.zeros(2, CROP_SIZE, CROP_SIZE, dtype=image_norm.dtype)
    r0, c0, hs, ws = box
    rows = _crop_indices(image_norm.shape[0], r0, hs)
    cols = _crop_indices(image_norm.shape[1], c0, ws)
    mask_t = torch.from_numpy(np.asarray(mask, dtype=np.float32)).to(image_norm.dtype)
    planes = torch.stack([image_norm, mask_t]).index_select(1, rows).index_select(2, cols)
    out = F.interpolate(
        planes[None], size=(CROP_SIZE, CROP_SIZE), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0]


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, cout), cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class DiceRegressor(nn.Module):
    """CNN [image, mask] crop -> predicted Dice in [0, 1] (sigmoid), about 0.3 M parameters."""

    def __init__(self, base: int = 16) -> None:
        super().__init__()
        c = [base, base * 2, base * 4, base * 8]
        self.features = nn.Sequential(
            _block(2, c[0], 1),
            _block(c[0], c[1], 2),  # 32
            _block(c[1], c[1], 1),
            _block(c[1], c[2], 2),  # 16
            _block(c[2], c[2], 1),
            _block(c[2], c[3], 2),  # 8
            _block(c[3], c[3], 2),  # 4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c[3], 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 2, S, S] -> [N] predicted Dice."""
        h = self.features(x).mean(dim=(2, 3))
        return torch.sigmoid(self.head(h))[:, 0]


@dataclass
class BaselineConfig:
    out_dir: Path = Path("runs/baseline")
    seed: int = 0
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    base_channels: int = 16
    threads: int = 1
    max_minutes: float | None = 12.0
    limit: int | None = None  # cases per split, for quick runs
    sources: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["sources"] = list(self.sources) if self.sources is not None else None
        return d


@dataclass
class BaselineRecord:
    """What training measured: per epoch losses and validation metrics, and the chosen threshold."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_mae: float = float("inf")
    youden_threshold: float = GOOD_DICE
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    train_cases: int = 0
    val_cases: int = 0


def prepare(cases: Sequence[CaseLike]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops [N, 2, S, S] and true Dice [N] of ``cases``, normalised as the gate normalises."""
    xs = []
    for case in cases:
        image = torch.from_numpy(normalize_robust(case.image))
        xs.append(regressor_input(image, case.mask))
    x = torch.stack(xs) if xs else torch.zeros(0, 2, CROP_SIZE, CROP_SIZE)
    y = torch.tensor([float(c.dice) for c in cases], dtype=torch.float32)
    return x, y


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips and 90-degree rotations of the whole batch (Dice does not change under either)."""
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=gen)):
        x = x.flip(3)
    return x


def auroc(bad_scores: np.ndarray, good_scores: np.ndarray) -> float:
    """P(a good case scores above a bad one), ties counted half (Mann-Whitney U)."""
    if bad_scores.size == 0 or good_scores.size == 0:
        return float("nan")
    diff = good_scores[:, None] - bad_scores[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def youden_threshold(scores: np.ndarray, is_good: np.ndarray) -> float:
    """Threshold t maximising sensitivity + specificity - 1 for the rule "pass iff score >= t"."""
    best_t, best_j = GOOD_DICE, -1.0
    good = scores[is_good]
    bad = scores[~is_good]
    if good.size == 0 or bad.size == 0:
        return best_t
    for t in np.unique(scores):
        j = float((good >= t).mean() + (bad < t).mean() - 1.0)
        if j > best_j:
            best_t, best_j = float(t), j
    return best_t


def metrics(pred: np.ndarray, dice: np.ndarray, threshold: float) -> dict[str, float]:
    """MAE, AUROC (good = true Dice >= 0.8), accuracy and sensitivity/false-reject at ``threshold``."""
    good = dice >= GOOD_DICE
    passed = pred >= threshold
    return {
        "n": float(pred.size),
        "mae": float(np.abs(pred - dice).mean()) if pred.size else float("nan"),
        "auroc": auroc(pred[~good], pred[good]),
        "threshold": float(threshold),
        "accuracy": float((passed == good).mean()) if pred.size else float("nan"),
        "sensitivity_bad": float((~passed[~good]).mean()) if (~good).any() else float("nan"),
        "false_reject_good": float((~passed[good]).mean()) if good.any() else float("nan"),
    }


def _predict(model: DiceRegressor, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [model(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def fit(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config: BaselineConfig,
) -> tuple[DiceRegressor, BaselineRecord]:
    """Train with MSE on the true Dice; keep the epoch with the lowest validation MAE."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = DiceRegressor(base=config.base_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(train_x.shape[0] / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    record = BaselineRecord(train_cases=int(train_x.shape[0]), val_cases=int(val_x.shape[0]))
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(train_x.shape[0], generator=gen)
        total = 0.0
        for i in range(0, order.numel(), config.batch_size):
            idx = order[i : i + config.batch_size]
            pred = model(_augment(train_x[idx], gen))
            loss = F.mse_loss(pred, train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        entry = {"epoch": float(epoch), "train_mse": total / max(1, order.numel())}
        if val_x.shape[0]:
            val_mae = float(np.abs(_predict(model, val_x) - val_y.numpy()).mean())
            entry["val_mae"] = val_mae
        else:
            val_mae = entry["train_mse"]
        record.epochs.append(entry)
        if val_mae < record.best_val_mae:
            record.best_val_mae, record.best_epoch = val_mae, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elapsed = time.perf_counter() - started
        log.info("baseline epoch %d: %s (%.0fs)", epoch, entry, elapsed)
        if config.max_minutes is not None and elapsed > 60 * config.max_minutes:
            log.info("baseline: time budget of %.1f min reached after epoch %d", config.max_minutes, epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    record.seconds = time.perf_counter() - started
    if val_x.shape[0]:
        pred = _predict(model, val_x)
        dice = val_y.numpy()
        record.youden_threshold = youden_threshold(pred, dice >= GOOD_DICE)
        record.val = metrics(pred, dice, GOOD_DICE)
        record.val["youden_threshold"] = record.youden_threshold
    return model, record


def train_baseline(config: BaselineConfig) -> Path:
    """Load the cases, train, and write ``dice_regression.pt`` (+ a JSON record) into ``config.out_dir``."""
    from gate.model.cases import load_cases

    torch.set_num_threads(config.threads)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    sources = list(config.sources) if config.sources is not None else None
    t0 = time.perf_counter()
    train_cases = load_cases("train", seed=config.seed, limit=config.limit, sources=sources)
    val_cases = load_cases("val", seed=config.seed, limit=config.limit, sources=sources)
    train_x, train_y = prepare(train_cases)
    val_x, val_y = prepare(val_cases)
    log.info(
        "baseline data: %d train, %d val cases prepared in %.0fs",
        len(train_cases),
        len(val_cases),
        time.perf_counter() - t0,
    )
    model, record = fit(train_x, train_y, val_x, val_y, config)
    path = config.out_dir / CHECKPOINT_NAME
    torch.save(
        {"config": config.to_dict(), "model": model.state_dict(), "record": asdict(record)},
        path,
    )
    (config.out_dir / "dice_regression.json").write_text(
        json.dumps({"config": config.to_dict(), "record": asdict(record)}, indent=2) + "\n"
    )
    log.info("baseline written to %s: val %s", path, record.val)
    return path


@dataclass(frozen=True)
class DiceBaseline:
    """A trained Dice regressor and its thresholds; :meth:`predict_dice` is what the evaluation calls."""

    model: DiceRegressor
    youden_threshold: float
    record: dict[str, object]

    def predict_dice(self, image: np.ndarray, mask: np.ndarray) -> float:
        """Predicted Dice in [0, 1] of ``mask`` on the raw ``image`` (normalised here as the gate does)."""
        x = regressor_input(torch.from_numpy(normalize_robust(image)), mask)
        with torch.no_grad():
            return float(self.model(x[None])[0])

    def predict_normalized(self, image_norm: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
        """Differentiable predicted Dice of an already normalised frame (for the attack)."""
        return self.model(regressor_input(image_norm, mask)[None])[0]


def load_baseline(path: Path = Path("runs/baseline") / CHECKPOINT_NAME) -> DiceBaseline:
    """Load a checkpoint written by :func:`train_baseline`."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = DiceRegressor(base=int(state["config"].get("base_channels", 16)))
    model.load_state_dict(state["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    record = state.get("record", {})
    return DiceBaseline(
        model=model, youden_threshold=float(record.get("youden_threshold", GOOD_DICE)), record=record
    )


_LOADED: dict[Path, DiceBaseline] = {}


def predict_dice(image: np.ndarray, mask: np.ndarray, *, checkpoint: Path | None = None) -> float:
    """Predicted Dice of ``mask`` on raw ``image`` with the baseline trained into ``runs/baseline``.

    The checkpoint is loaded once per path; pass ``checkpoint`` for another run.
    """
    path = Path(checkpoint) if checkpoint is not None else Path("runs/baseline") / CHECKPOINT_NAME
    if path not in _LOADED:
        _LOADED[path] = load_baseline(path)
    return _LOADED[path].predict_dice(image, mask)
