"""Does a score tell good from bad segmentations on held-out volumes? (issue 3, item 6)

For each REC-Net (the shipped ONNX model and any torch checkpoints) and each score of
:mod:`gate.model.scores` (plus the Dice-regression baseline when trained), on the TEST volumes:

* AUROC of good (true Dice >= 0.8) vs bad (Dice < 0.8) — pooled, per failure mode, per structure;
* sensitivity (bad masks rejected) and false-reject rate of ground-truth masks at the operating
  threshold, chosen on the VAL split as the 5th percentile of the ground-truth masks' scores (a 5 %
  false-reject target), and for the raw SSIM also at the model card's threshold;
* Spearman correlation of score with true Dice.

Metric helpers are plain numpy (no sklearn) so the tests can hold them to hand-computed values.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from gate.model.cases import BAD_DICE, BAD_SURFACE_DISTANCE, GOOD, Case, load_cases
from gate.model.scores import LabelStats, StripScorer, all_scores

log = logging.getLogger("gate.model")

TARGET_FALSE_REJECT = 0.05
CLASSIC_SCORES = ("gradient", "fill_ssim", "fill_wide", "fill_local")
RECNET_SCORES = (
    "ssim",
    "ssim_gain",
    "ssim_wide",
    "ssim_local",
    "ssim_label_z",
    "ssim_z_plus_local",
    "ssim_plus_local",
)


# --- metrics --------------------------------------------------------------------------------------


def auroc(good: ArrayLike, bad: ArrayLike) -> float:
    """P(score of a good case > score of a bad case), ties counting half (Mann-Whitney U / (n_g n_b))."""
    g = np.asarray(good, np.float64)
    b = np.asarray(bad, np.float64)
    g, b = g[np.isfinite(g)], b[np.isfinite(b)]
    if g.size == 0 or b.size == 0:
        return float("nan")
    diff = g[:, None] - b[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def rankdata(values: ArrayLike) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(values, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, np.float64)
    sorted_x = x[order]
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks; pairs with a NaN are dropped."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    rx -= rx.mean()
    ry -= ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def reject_rate(scores: ArrayLike, threshold: float) -> float:
    """Share of cases that FAIL (score < threshold; a NaN score — nothing to verify — fails too)."""
    s = np.asarray(scores, np.float64)
    if s.size == 0:
        return float("nan")
    return float(np.mean(~(s >= threshold)))


def threshold_for_false_reject(good_scores: ArrayLike, rate: float = TARGET_FALSE_REJECT) -> float:
    """The threshold that rejects ``rate`` of these good scores (their ``rate`` quantile)."""
    s = np.asarray(good_scores, np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan")
    return float(np.quantile(s, rate))


def roc_curve(good: ArrayLike, bad: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(false-reject rate of good, sensitivity for bad) as the threshold sweeps all scores."""
    g = np.asarray(good, np.float64)
    b = np.asarray(bad, np.float64)
    ts = np.unique(np.concatenate([g[np.isfinite(g)], b[np.isfinite(b)], [np.inf, -np.inf]]))
    frr = np.array([np.mean(~(g >= t)) for t in ts])
    sens = np.array([np.mean(~(b >= t)) for t in ts])
    return frr, sens


# --- scoring --------------------------------------------------------------------------------------


@dataclass
class ScoredCases:
    """Per-case metadata and score columns (``model:score`` for REC-Net scores, bare names otherwise)."""

    cases: list[Case]
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dice(self) -> np.ndarray:
        return np.array([c.dice for c in self.cases])

    @property
    def bad(self) -> np.ndarray:
        return self.dice < BAD_DICE

    @property
    def ground_truth(self) -> np.ndarray:
        return np.array([c.mode == GOOD for c in self.cases])

    @property
    def surface_distance(self) -> np.ndarray:
        return np.array([c.surface_distance for c in self.cases])

    def attr(self, name: str) -> np.ndarray:
        return np.array([getattr(c, name) for c in self.cases])


def score_all(
    cases: Sequence[Case],
    models: Mapping[str, StripScorer],
    *,
    classic: bool = True,
    baseline: Callable[[np.ndarray, np.ndarray], float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScoredCases:
    """Every score of every case: the REC-Net scores per model, the non-learned ones, the baseline."""
    out = ScoredCases(list(cases))
    n = len(cases)
    names: dict[str, list[float]] = {}
    started = time.perf_counter()
    for model_name, scorer in models.items():
        cols: dict[str, list[float]] = {"ssim": [], "ssim_gain": [], "ssim_wide": [], "ssim_local": []}
        for i, case in enumerate(cases):
            row = all_scores(case.image, [case.mask], scorer, classic=False)[0]
            for key, values in cols.items():
                values.append(row[key])
            if progress and (i + 1) % 200 == 0:
                progress(f"{model_name}: {i + 1}/{n} cases, {time.perf_counter() - started:.0f}s")
        for key, values in cols.items():
            names[f"{model_name}:{key}"] = values
    if classic:
        rows = [all_scores(c.image, [c.mask], None)[0] for c in cases]
        for key in CLASSIC_SCORES:
            names[key] = [r[key] for r in rows]
    if baseline is not None:
        names["dice_regression"] = [baseline(c.image, c.mask) for c in cases]
    out.columns = {k: np.asarray(v, np.float64) for k, v in names.items()}
    return out


def add_label_scores(test: ScoredCases, val: ScoredCases, models: Sequence[str]) -> dict[str, LabelStats]:
    """Derived REC-Net scores: SSIM z-scored per label (val ground-truth stats); plus local optimality.

    The local-optimality term is scaled by its val spread on ground-truth masks, so both terms count alike.
    """
    stats: dict[str, LabelStats] = {}
    labels_val = val.attr("structure")
    gt_val = val.ground_truth
    for m in models:
        st = LabelStats.fit(val.columns[f"{m}:ssim"][gt_val], list(labels_val[gt_val]))
        stats[m] = st
        for scored in (val, test):
            labels = scored.attr("structure")
            z = np.array([st.z(v, lab) for v, lab in zip(scored.columns[f"{m}:ssim"], labels, strict=True)])
            scored.columns[f"{m}:ssim_label_z"] = z
        local_sd = float(np.nanstd(val.columns[f"{m}:ssim_local"][gt_val])) or 1.0
        ssim_sd = float(np.nanstd(val.columns[f"{m}:ssim"][gt_val])) or 1.0
        for scored in (val, test):
            scored.columns[f"{m}:ssim_z_plus_local"] = (
                scored.columns[f"{m}:ssim_label_z"] + scored.columns[f"{m}:ssim_local"] / local_sd
            )
            scored.columns[f"{m}:ssim_plus_local"] = (
                scored.columns[f"{m}:ssim"] / ssim_sd + scored.columns[f"{m}:ssim_local"] / local_sd
            )
    return stats


# --- summaries ------------------------------------------------------------------------------------


def summarize_score(scored: ScoredCases, column: str, threshold: float) -> dict[str, object]:
    s = scored.columns[column]
    bad = scored.bad
    gt = scored.ground_truth
    off = scored.surface_distance > BAD_SURFACE_DISTANCE
    out: dict[str, object] = {
        "auroc": auroc(s[~bad], s[bad]),
        "auroc_gt": auroc(s[gt], s[bad]),
        "spearman": spearman(s, scored.dice),
        # The boundary criterion: outline within 1 px on average vs farther (what a strip score can see).
        "auroc_surface": auroc(s[~off], s[off]),
        "spearman_surface": spearman(s, -scored.surface_distance),
        "threshold": threshold,
        "sensitivity": reject_rate(s[bad], threshold),
        "false_reject_gt": reject_rate(s[gt], threshold),
        "false_reject_good": reject_rate(s[~bad], threshold),
    }
    fam = scored.attr("family")
    out["per_mode"] = {
        f: {
            "n_bad": int((bad & (fam == f)).sum()),
            "auroc": auroc(s[~bad], s[bad & (fam == f)]),
            "sensitivity": reject_rate(s[bad & (fam == f)], threshold),
        }
        for f in sorted(set(fam[bad]))
    }
    struct = scored.attr("structure")
    out["per_structure"] = {
        k: {
            "n": int((struct == k).sum()),
            "auroc": auroc(s[~bad & (struct == k)], s[bad & (struct == k)]),
            "false_reject_gt": reject_rate(s[gt & (struct == k)], threshold),
            "sensitivity": reject_rate(s[bad & (struct == k)], threshold),
        }
        for k in sorted(set(struct))
    }
    return out


def summarize(test: ScoredCases, val: ScoredCases, card_thresholds: Mapping[str, float]) -> dict[str, object]:
    """Metrics of every score column on test, thresholds chosen on val (5 % false rejects of ground truth)."""
    result: dict[str, object] = {
        "cases": len(test.cases),
        "bad": int(test.bad.sum()),
        "ground_truth": int(test.ground_truth.sum()),
        "volumes": sorted(set(test.attr("volume"))),
        "scores": {},
    }
    scores: dict[str, object] = {}
    for column in test.columns:
        t = threshold_for_false_reject(val.columns[column][val.ground_truth])
        scores[column] = summarize_score(test, column, t)
    for column, t in card_thresholds.items():
        if column in test.columns:
            scores[f"{column}@card"] = summarize_score(test, column, t)
    result["scores"] = scores
    return result


# --- plots and report -----------------------------------------------------------------------------


def plot(test: ScoredCases, columns: Sequence[str], out_dir: Path, tag: str) -> list[Path]:
    """Score-vs-Dice scatter and ROC curves of ``columns`` as ``scatter_<tag>.png`` and ``roc_<tag>.png``."""
    return plot_arrays(test.dice, test.ground_truth, {c: test.columns[c] for c in columns}, out_dir, tag)


def plot_arrays(
    dice: np.ndarray, ground_truth: np.ndarray, columns: Mapping[str, np.ndarray], out_dir: Path, tag: str
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    bad = dice < BAD_DICE
    gt = ground_truth
    names = list(columns)
    ncols = min(5, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 2.5 * nrows), dpi=70, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, col in zip(axes.flat, names, strict=False):
        s = columns[col]
        ax.scatter(dice[~gt], s[~gt], s=3, alpha=0.5, c=np.where(bad[~gt], "tab:red", "tab:blue"))
        ax.scatter(dice[gt], s[gt], s=8, c="k", marker="x")
        ax.axvline(BAD_DICE, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("true Dice", fontsize=7)
        ax.set_title(col, fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    paths = [out_dir / f"scatter_{tag}.png"]
    fig.savefig(paths[0])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=70)
    for col in names:
        s = columns[col]
        frr, sens = roc_curve(s[~bad], s[bad])
        ax.plot(frr, sens, label=f"{col} ({auroc(s[~bad], s[bad]):.2f})", lw=1)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("false-reject rate (Dice >= 0.8)")
    ax.set_ylabel("sensitivity (Dice < 0.8 rejected)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out_dir / f"roc_{tag}.png")
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _fmt(v: object) -> str:
    return (
        f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else ("–" if isinstance(v, float) else str(v))
    )


def _auroc_table(
    title: str, scores: Mapping[str, Mapping[str, object]], names: Sequence[str], breakdown: str
) -> list[str]:
    """One row per score, one AUROC column per key of its ``breakdown`` ("per_mode", "per_structure")."""
    groups = {n: cast(Mapping[str, Mapping[str, float]], scores[n][breakdown]) for n in names}
    keys = sorted({k for n in names for k in groups[n]})
    lines = ["", title, "", "| score | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for n in names:
        cells = (_fmt(groups[n].get(k, {}).get("auroc", float("nan"))) for k in keys)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def markdown_tables(summary: Mapping[str, object]) -> str:
    scores: Mapping[str, Mapping[str, object]] = summary["scores"]  # type: ignore[assignment]
    lines = [
        "| score | AUROC (Dice ≥ 0.8 vs < 0.8) | AUROC (ground truth vs Dice < 0.8) | Spearman | "
        "AUROC (surface distance ≤ 1 px vs > 1 px) | threshold "
        "| sensitivity | false-reject (ground truth) | false-reject (Dice ≥ 0.8) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {_fmt(s['auroc'])} | {_fmt(s['auroc_gt'])} | {_fmt(s['spearman'])} "
            f"| {_fmt(s['auroc_surface'])} "
            f"| {_fmt(s['threshold'])} | "
            f"{_fmt(s['sensitivity'])} | {_fmt(s['false_reject_gt'])} | {_fmt(s['false_reject_good'])} |"
        )
    names = [n for n in scores if "@" not in n]
    lines += _auroc_table(
        "AUROC per failure mode (that mode's bad masks vs all good ones):", scores, names, "per_mode"
    )
    lines += _auroc_table("AUROC per structure (within the structure):", scores, names, "per_structure")
    return "\n".join(lines)


def machine() -> str:
    import os

    cpu = f"{platform.machine()} {platform.processor() or ''}".strip()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()}"


# --- the whole run --------------------------------------------------------------------------------


def load_models(
    onnx_dir: Path | None, checkpoints: Mapping[str, Path], threads: int = 1
) -> dict[str, StripScorer]:
    """The shipped ONNX REC-Net (as ``shipped``) and torch checkpoints by name."""
    models: dict[str, StripScorer] = {}
    if onnx_dir is not None:
        from gate.verify.modelcard import load_model_card
        from gate.verify.recnet import CARD_FILE, CPU_PROVIDER, RecNetSession

        card = load_model_card(Path(onnx_dir) / CARD_FILE)
        session = RecNetSession(
            Path(onnx_dir) / card.onnx_file,
            card,
            providers=[CPU_PROVIDER],
            batch_size=128,
            intra_op_threads=threads,
        )
        models["shipped"] = StripScorer(session)
    for name, path in checkpoints.items():
        from gate.model.evaluate_quick import TorchSession
        from gate.model.train import load_generator
        from gate.verify.modelcard import ModelCard

        gen, cfg, _ = load_generator(path)
        card = ModelCard(
            version=name,
            threshold=0.5,
            tile_size=cfg.tile_size,
            strip_width=cfg.strip_width,
            reconstruction_loss=cfg.reconstruction_loss,
        )
        models[name] = StripScorer(TorchSession(gen, card))
    return models


def run(
    out_dir: Path,
    *,
    onnx_dir: Path | None,
    checkpoints: Mapping[str, Path],
    baseline_checkpoint: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    sources: Sequence[str] | None = None,
    test_split: str = "test",
    threads: int = 1,
) -> dict[str, object]:
    """Score val and test, summarise, plot and write ``summary.json``; returns the summary."""
    models = load_models(onnx_dir, checkpoints, threads)
    baseline = None
    if baseline_checkpoint is not None and Path(baseline_checkpoint).is_file():
        from gate.model.baseline import load_baseline

        baseline = load_baseline(Path(baseline_checkpoint)).predict_dice
    val_cases = load_cases("val", seed=seed, limit=limit, sources=sources)
    if test_split == "all":  # leave-one-source-out: every volume of a source the model never saw
        test_cases = [
            c for sp in ("train", "val", "test") for c in load_cases(sp, seed=seed, sources=sources)
        ]
        if limit is not None and len(test_cases) > limit:
            test_cases = [
                test_cases[i] for i in np.linspace(0, len(test_cases) - 1, limit).round().astype(int)
            ]
    else:
        test_cases = load_cases(test_split, seed=seed, limit=limit, sources=sources)
    log.info(
        "scoring %d val and %d %s cases with %s", len(val_cases), len(test_cases), test_split, list(models)
    )
    val = score_all(val_cases, models, baseline=baseline, progress=log.info)
    test = score_all(test_cases, models, baseline=baseline, progress=log.info)
    add_label_scores(test, val, list(models))
    card_thresholds = {f"{m}:{s.card.score}": s.card.threshold for m, s in models.items() if m == "shipped"}
    summary = summarize(test, val, card_thresholds)
    summary["models"] = {
        m: {
            "reconstruction_loss": s.card.reconstruction_loss,
            "strip_width": s.card.strip_width,
            "threshold": s.card.threshold,
        }
        for m, s in models.items()
    }
    summary["machine"] = machine()
    out_dir.mkdir(parents=True, exist_ok=True)
    for m in models:
        plot(test, [f"{m}:{k}" for k in RECNET_SCORES] + list(CLASSIC_SCORES), out_dir, m)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    for name, scored in (("val_scores.npz", val), ("scores.npz", test)):
        arrays: dict[str, Any] = {
            "dice": scored.dice,
            "surface_distance": scored.surface_distance,
            **{key: scored.attr(key) for key in ("mode", "structure", "volume", "source")},
            **{k.replace(":", "__"): v for k, v in scored.columns.items()},
        }
        np.savez_compressed(out_dir / name, **arrays)
    return summary


def card_test_metrics(summary: Mapping[str, object], score: str) -> dict[str, object]:
    """The shipped model's held-out figures at its card threshold, for the card's ``test_held_out``."""
    scores = cast(Mapping[str, Mapping[str, float]], summary["scores"])
    at_card = scores[f"shipped:{score}@card"]
    volumes = cast(Sequence[str], summary["volumes"])
    figures = {
        "auroc_dice_ge_0.8_vs_lt_0.8": "auroc",
        "auroc_ground_truth_vs_bad": "auroc_gt",
        "auroc_surface_distance_le_1px": "auroc_surface",
        "spearman_score_vs_dice": "spearman",
        "sensitivity_at_threshold": "sensitivity",
        "false_reject_rate_ground_truth_at_threshold": "false_reject_gt",
    }
    return {
        "data": f"gate.model.cases test split: {summary['cases']} cases from {len(volumes)} held-out "
        f"volumes, {summary['ground_truth']} ground-truth masks; docs/evaluation/README.md",
        "score": score,
        "threshold": at_card["threshold"],
        **{name: round(float(at_card[key]), 3) for name, key in figures.items()},
        "note": "thresholds do not transfer exactly between sites: run `gate calibrate` on local data",
    }


def record_in_card(card_path: Path, metrics: Mapping[str, object]) -> None:
    """Write ``metrics`` as the card's ``test_held_out`` entry, every other field kept."""
    data = json.loads(Path(card_path).read_text())
    data.setdefault("metrics", {})["test_held_out"] = dict(metrics)
    Path(card_path).write_text(json.dumps(data, indent=2) + "\n")


def merge_runs(
    run_dirs: Sequence[Path], out_dir: Path, plot_columns: Sequence[str], *, tag: str = "test"
) -> str:
    """One table (and figures) from several :func:`run` outputs that scored the same cases.

    Each run's ``scores.npz`` / ``val_scores.npz`` columns are merged (first run wins on duplicates, so the
    non-learned scores appear once); thresholds are the val 5 % false-reject ones, as in :func:`summarize`.
    """
    test_cols: dict[str, np.ndarray] = {}
    val_cols: dict[str, np.ndarray] = {}
    dice = val_gt = gt = None
    surface: np.ndarray | None = None
    meta = {"dice", "surface_distance", "mode", "structure", "volume", "source"}
    for run_dir in run_dirs:
        test = np.load(Path(run_dir) / "scores.npz", allow_pickle=True)
        val = np.load(Path(run_dir) / "val_scores.npz", allow_pickle=True)
        if dice is None:
            dice, gt, val_gt = test["dice"], test["mode"] == GOOD, val["mode"] == GOOD
            surface = test["surface_distance"] if "surface_distance" in test.files else None
        elif not np.array_equal(test["dice"], dice):
            raise ValueError(f"{run_dir} scored other cases than {run_dirs[0]}")
        for key in test.files:
            if key not in meta and key.replace("__", ":") not in test_cols:
                test_cols[key.replace("__", ":")] = test[key]
                val_cols[key.replace("__", ":")] = val[key]
    assert dice is not None and gt is not None and val_gt is not None
    bad = dice < BAD_DICE
    off = surface > BAD_SURFACE_DISTANCE if surface is not None else None
    lines = [
        "| score | AUROC Dice ≥ 0.8 vs < 0.8 | AUROC ground truth vs Dice < 0.8 | Spearman "
        "| AUROC surface distance ≤ 1 px vs > 1 px | sensitivity | false-reject (ground truth) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, s in test_cols.items():
        t = threshold_for_false_reject(val_cols[key][val_gt])
        by_surface = auroc(s[~off], s[off]) if off is not None else float("nan")
        lines.append(
            f"| {key} | {_fmt(auroc(s[~bad], s[bad]))} | {_fmt(auroc(s[gt], s[bad]))} | "
            f"{_fmt(spearman(s, dice))} | {_fmt(by_surface)} | {_fmt(reject_rate(s[bad], t))} "
            f"| {_fmt(reject_rate(s[gt], t))} |"
        )
    plot_arrays(dice, gt, {c: test_cols[c] for c in plot_columns if c in test_cols}, Path(out_dir), tag)
    return "\n".join(lines)
