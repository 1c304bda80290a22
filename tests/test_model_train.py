"""A tiny pix2pix run of the REC-Net: it checkpoints, resumes where it stopped, and exports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nilearn  # noqa: F401 - the train extra
import numpy as np
import pytest
import torch  # the train extra, installed by make test

from gate.model.export import export
from gate.model.train import TrainConfig, train
from gate.verify.modelcard import load_model_card
from gate.verify.recnet import RecNetSession


def _config(out_dir: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        out_dir=out_dir,
        steps=steps,
        batch_size=2,
        tile_size=32,
        base_channels=4,
        icbm_step=60,
        icbm_axes=(2,),
        pydicom_files=("CT_small.dcm",),
        blobs_per_frame=2,
        checkpoint_every=1,
        log_every=1,
    )


def test_training_checkpoints_resumes_and_exports(tmp_path: Path) -> None:
    resumed_dir = tmp_path / "resumed"
    ckpt = train(_config(resumed_dir, steps=2))
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 2

    ckpt = train(_config(resumed_dir, steps=3))
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 3

    # The interrupted run ends where an uninterrupted one does: same batches, same weights.
    straight = torch.load(train(_config(tmp_path / "straight", steps=3)), weights_only=False)
    for name, weight in state["generator"].items():
        torch.testing.assert_close(weight, straight["generator"][name], msg=name)

    onnx_path, card_path = export(ckpt, tmp_path / "onnx", validate=False)
    card = load_model_card(card_path)
    assert (card.tile_size, card.strip_width, card.reconstruction_loss) == (32, 2, "ssim")
    session = RecNetSession(onnx_path, card)
    out = session.reconstruct(np.zeros((5, 2, 32, 32), dtype=np.float32))
    assert out.shape == (5, 1, 32, 32)
    assert card.score == "ssim_gain"

    # A card-only export keeps the ONNX file and rewrites the card, e.g. for the paper's raw score...
    before = onnx_path.read_bytes()
    export(ckpt, tmp_path / "onnx", validate=False, score="ssim", write_onnx=False)
    assert onnx_path.read_bytes() == before
    assert load_model_card(card_path).score == "ssim"
    # ...but only for the model it was exported from.
    other = train(dataclasses.replace(_config(tmp_path / "other", steps=1), seed=7))
    with pytest.raises(ValueError, match="differs from the ONNX model"):
        export(other, tmp_path / "onnx", validate=False, write_onnx=False)
