"""Export a trained REC-Net to ONNX with its model card (``gate export``).

The card (``gate.verify.modelcard.ModelCard``) carries everything inference must do as training did,
and the threshold chosen on held-out validation frames: good masks against clearly and moderately
wrong ones (shifted, dilated/eroded, a foreign structure), scored by the gate's own verifier on the
exported ONNX graph. Its content does not depend on the file hash; the gate records the hash per verdict.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from gate.model import data as data_mod
from gate.model.evaluate_quick import (
    evaluate,
    false_reject_threshold,
    frame_items,
    itk_head_items,
    score_cases,
    summarize,
    youden_threshold,
)
from gate.model.train import load_generator
from gate.verify.modelcard import ModelCard, Normalization, ScoreKind
from gate.verify.recnet import CARD_FILE, RecNetSession
from gate.verify.verifier import Verifier

log = logging.getLogger("gate.model")

OPSET = 17
ONNX_FILE = "recnet.onnx"
MODEL_VERSION = "0.1.0"


def export_onnx(generator: object, tile_size: int, path: Path) -> None:
    """Write the generator as ONNX: input ``input`` [N, 2, T, T], output ``reconstruction`` [N, 1, T, T]."""
    import torch

    dummy = torch.zeros(1, 2, tile_size, tile_size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no onnxscript; GroupNorm's trace-time check
        # on the (fixed) group size is harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            generator,  # type: ignore[arg-type]
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=["reconstruction"],
            dynamic_axes={"input": {0: "N"}, "reconstruction": {0: "N"}},
            opset_version=OPSET,
            dynamo=False,
        )


def export(
    checkpoint: Path,
    out_dir: Path,
    *,
    version: str = MODEL_VERSION,
    validate: bool = True,
    max_validation_frames: int | None = 90,
    false_reject_rate: float = 0.05,
    score: ScoreKind = "ssim_gain",
    write_onnx: bool = True,
) -> tuple[Path, Path]:
    """Write ``recnet.onnx`` and ``recnet.card.json`` into ``out_dir``; returns both paths.

    With ``validate`` the threshold is chosen on the held-out validation frames so that a fraction
    ``false_reject_rate`` of the correct masks fails (Youden's J is recorded beside it), and the card
    records AUROC and error rates there and on the ITK heads; without it (for tests) the threshold is a
    placeholder 0.5 and no metrics are recorded. ``score`` is the verdict score the card prescribes;
    without ``write_onnx`` the ONNX file already in ``out_dir`` is kept (it must be this checkpoint's)
    and only the card is rewritten.
    """
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator, cfg, record = load_generator(Path(checkpoint))
    onnx_path = out_dir / ONNX_FILE
    if write_onnx:
        export_onnx(generator, cfg.tile_size, onnx_path)
    elif not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path} does not exist: export without write_onnx=False first")

    card = ModelCard(
        version=version,
        onnx_file=ONNX_FILE,
        tile_size=cfg.tile_size,
        strip_width=cfg.strip_width,
        normalization=Normalization(),
        ssim_sigma=cfg.ssim_sigma,
        score=score,
        threshold=0.5,
        reconstruction_loss=cfg.reconstruction_loss,
        training_data=data_mod.training_data_description(cfg.data_config()),
        training={
            "method": "pix2pix (conditional GAN): BCE adversarial + lambda * reconstruction loss, "
            "both on the strip composite",
            "generator": f"U-Net, base {cfg.base_channels} channels, {cfg.depth} down levels, "
            "GroupNorm, sigmoid",
            "discriminator": "conditional PatchGAN (3 channels in)",
            "steps": int(record.get("steps_done", cfg.steps)),  # type: ignore[call-overload]
            "batch_size": cfg.batch_size,
            "optimizer": f"Adam lr {cfg.lr} betas {list(cfg.betas)}",
            "lambda_rec": cfg.lambda_rec,
            "seed": cfg.seed,
            "wall_seconds": round(float(record.get("seconds", 0.0)), 1),  # type: ignore[arg-type]
            "threads": cfg.threads,
            "device": "cpu",
        },
    )
    if not write_onnx:
        from gate.model.attack import check_generator_matches_session

        check_generator_matches_session(generator, RecNetSession(onnx_path, card, intra_op_threads=1))
    if validate:
        session = RecNetSession(onnx_path, card, intra_op_threads=2)
        verifier = Verifier(session)
        frames = data_mod.validation_frames(cfg.data_config())
        if max_validation_frames is not None and len(frames) > max_validation_frames:
            keep = np.random.default_rng(cfg.seed).choice(len(frames), max_validation_frames, replace=False)
            frames = [frames[i] for i in sorted(keep)]
        cases = score_cases(verifier, frame_items(frames), seed=cfg.seed)
        good = np.array([c.score for c in cases if c.kind == "good"])
        bad = np.array([c.score for c in cases if c.kind != "good"])
        threshold = round(false_reject_threshold(good, false_reject_rate), 4)
        youden = round(youden_threshold(good, bad), 4)
        card.threshold = threshold
        card.metrics = {
            "score": score,
            "threshold_rule": f"{false_reject_rate:.0%} of the good validation masks below it",
            "youden_threshold_validation": youden,
            "youden_validation": summarize(cases, youden),
            "validation": {
                "data": "held out: ICBM152 sagittal slices; pydicom-data "
                + ", ".join(data_mod.heldout_files(cfg.data_config()))
                + " (Otsu and painted-structure masks)",
                **summarize(cases, threshold),
            },
        }
        # score_frame does not read the card's threshold, so the same verifier serves.
        _, itk = evaluate(verifier, itk_head_items(), threshold)
        card.metrics["heldout_real_anatomy"] = {
            "data": "ITK example heads (other subjects/scanners): KmeansTest T1 coronal slices with its "
            "skull-strip brain mask; BrainWeb PD and T1 slices with ITK VentricleModel",
            **itk,
        }
    card_path = out_dir / CARD_FILE
    card_path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    log.info("exported %s and %s (threshold %.4f)", onnx_path, card_path, card.threshold)
    return onnx_path, card_path
