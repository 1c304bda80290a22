"""``gate evaluate`` and ``gate calibrate``: plain functions the main ``gate`` Typer app registers.

Heavy imports (torch, matplotlib) happen inside the commands, so ``gate`` starts without the ``train`` extra.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer


def _checkpoints(specs: list[str]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise typer.BadParameter(f"checkpoint must be NAME=PATH, got {spec!r}")
        out[name] = Path(path)
    return out


def evaluate_command(
    out_dir: Path = typer.Option(Path("runs/evaluation"), help="summary.json, scores.npz and plots go here"),
    onnx_dir: Path = typer.Option(Path("onnx_models"), help="the shipped REC-Net (recnet.card.json)"),
    shipped: bool = typer.Option(True, help="score with the shipped ONNX REC-Net"),
    checkpoint: list[str] = typer.Option([], help="more REC-Nets as NAME=runs/x/recnet_last.pt (repeatable)"),
    baseline: Path = typer.Option(Path("runs/baseline/dice_regression.pt"), help="Dice-regression baseline"),
    sources: list[str] = typer.Option([], help="data sources to use (default: all offline sources)"),
    split: str = typer.Option(
        "test", help="split to report on: test, val, or all (leave-one-source-out); thresholds from val"
    ),
    limit: int | None = typer.Option(None, help="at most this many cases per split (quick runs)"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="torch / ONNX Runtime CPU threads"),
    record_in_card: bool = typer.Option(
        False, help="write the shipped model's test figures into its card (metrics.test_held_out)"
    ),
) -> None:
    """Score good and bad segmentations of held-out volumes and report AUROC, sensitivity, false rejects."""
    import torch

    from gate.model.evaluate import card_test_metrics, markdown_tables, run
    from gate.model.evaluate import record_in_card as write_card_metrics

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = run(
        out_dir,
        onnx_dir=onnx_dir if shipped and (onnx_dir / "recnet.card.json").is_file() else None,
        checkpoints=_checkpoints(checkpoint),
        baseline_checkpoint=baseline,
        seed=seed,
        limit=limit,
        sources=sources or None,
        test_split=split,
        threads=threads,
    )
    typer.echo(markdown_tables(summary))
    typer.echo(f"\nwritten: {out_dir / 'summary.json'}")
    if record_in_card:
        from gate.verify.modelcard import load_model_card
        from gate.verify.recnet import CARD_FILE

        if not shipped or split != "test" or limit is not None:
            raise typer.BadParameter("--record-in-card needs the shipped model on the whole test split")
        card_path = onnx_dir / CARD_FILE
        write_card_metrics(card_path, card_test_metrics(summary, load_model_card(card_path).score))
        typer.echo(f"recorded in: {card_path}")


def calibrate_command(
    data: Path = typer.Argument(..., help="folder of DICOM series + SEGs, or of image/mask files"),
    labels: Path = typer.Option(
        ..., help="CSV: seg,segment,label (DICOM) or image,mask,segment,label (files)"
    ),
    config: Path = typer.Option(Path("config.yaml"), help="config.yaml whose thresholds: mapping is updated"),
    sensitivity: float = typer.Option(0.95, help="share of bad segmentations each threshold must reject"),
    onnx_dir: Path = typer.Option(Path("onnx_models"), help="the REC-Net whose scores are calibrated"),
    snippet: Path | None = typer.Option(None, help="write a YAML snippet here instead of updating --config"),
) -> None:
    """Choose per-label thresholds for a target sensitivity from a site's labelled SEGs or masks."""
    import csv

    import yaml

    from gate.model.calibrate import (
        calibrate,
        score_dicom_set,
        score_file_set,
        thresholds_mapping,
        update_config_thresholds,
    )
    from gate.verify.recnet import load_shipped_model
    from gate.verify.verifier import Verifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    verifier = Verifier(load_shipped_model(onnx_dir))
    with open(labels, newline="") as fh:
        header = next(csv.reader(fh))
    scorer = score_dicom_set if "seg" in header else score_file_set
    scores = scorer(data, labels, verifier)
    found = calibrate(scores, sensitivity)
    for t in found:
        typer.echo(
            f"{t.segment}: threshold {t.threshold:.4f}  ({t.n_good} good, {t.n_bad} bad; sensitivity "
            f"{t.sensitivity:.3f}, false rejects {t.false_reject:.3f}) {t.note}"
        )
    mapping = thresholds_mapping(found)
    if snippet is not None:
        snippet.write_text(yaml.safe_dump({"thresholds": mapping}, sort_keys=True))
        typer.echo(f"written: {snippet}")
    else:
        update_config_thresholds(config, mapping)
        typer.echo(f"updated thresholds in {config}: {json.dumps(mapping)}")


if __name__ == "__main__":  # until the main ``gate`` app registers them: python -m gate.model.evaluate_cli
    app = typer.Typer(add_completion=False)
    app.command("evaluate")(evaluate_command)
    app.command("calibrate")(calibrate_command)
    app()
