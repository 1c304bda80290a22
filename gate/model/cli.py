"""``gate train`` and ``gate export``: plain functions the main ``gate`` Typer app registers.

torch is imported inside the commands only, so ``gate`` runs on a node without the ``train`` extra.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def train_command(
    out_dir: Path = typer.Option(Path("runs/recnet"), help="checkpoints and log go here"),
    steps: int = typer.Option(4000, help="generator/discriminator update steps"),
    batch_size: int = typer.Option(24, help="tiles per step"),
    tile_size: int = typer.Option(64, help="tile side in pixels (divisible by 8)"),
    strip_width: int = typer.Option(2, help="strip half-width w: dilate(mask, w) AND NOT erode(mask, w)"),
    loss: str = typer.Option("ssim", help="reconstruction loss: ssim, mae or l2"),
    lambda_rec: float = typer.Option(100.0, help="weight of the reconstruction loss"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="torch CPU threads"),
    max_minutes: float | None = typer.Option(None, help="stop after this wall time (checkpointed)"),
    resume: bool = typer.Option(True, help="continue from out_dir/recnet_last.pt when present"),
) -> None:
    """Train the REC-Net pix2pix-style (arXiv 2310.16999); needs the ``train`` extra."""
    from gate.model.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    checkpoint = train(
        TrainConfig(
            out_dir=out_dir,
            steps=steps,
            batch_size=batch_size,
            tile_size=tile_size,
            strip_width=strip_width,
            reconstruction_loss=loss,
            lambda_rec=lambda_rec,
            seed=seed,
            threads=threads,
            max_minutes=max_minutes,
            resume=resume,
        )
    )
    typer.echo(f"checkpoint: {checkpoint}")


def export_command(
    checkpoint: Path = typer.Option(Path("runs/recnet/recnet_last.pt"), help="training checkpoint"),
    out_dir: Path = typer.Option(Path("onnx_models"), help="where recnet.onnx and recnet.card.json go"),
    version: str = typer.Option("0.1.0", help="model version written to the card"),
    validate: bool = typer.Option(True, help="choose the threshold and measure metrics on held-out data"),
    false_reject_rate: float = typer.Option(
        0.05, help="share of correct validation masks the default threshold may reject"
    ),
    score: str = typer.Option(
        "ssim_gain", help="verdict score: ssim_gain (shipped) or ssim (the paper's raw)"
    ),
    card_only: bool = typer.Option(
        False, help="keep the ONNX file in --out-dir and only rewrite its card (e.g. for another --score)"
    ),
) -> None:
    """Export a checkpoint to ONNX (opset 17, dynamic batch) with its model card."""
    from gate.model.export import export

    if score not in ("ssim", "ssim_gain"):
        raise typer.BadParameter(f"score must be ssim or ssim_gain, got {score!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    onnx_path, card_path = export(
        checkpoint,
        out_dir,
        version=version,
        validate=validate,
        false_reject_rate=false_reject_rate,
        score=score,  # type: ignore[arg-type]
        write_onnx=not card_only,
    )
    typer.echo(f"model: {onnx_path}\ncard: {card_path}")
