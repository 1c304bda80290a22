"""ONNX export of the REC-Net: the graph computes what torch computes, and the shipped model fits its card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch  # the train extra, installed by make test

from gate.model.export import export_onnx
from gate.model.unet import UNetGenerator
from gate.verify.modelcard import load_model_card

ONNX_DIR = Path(__file__).resolve().parents[1] / "onnx_models"


def test_onnx_matches_torch_for_any_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = UNetGenerator(base=8, depth=3).eval()
    path = tmp_path / "recnet.onnx"
    export_onnx(gen, 32, path)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 2, 32, 32), dtype=np.float32)
    (onnx_out,) = session.run(["reconstruction"], {"input": x})
    with torch.no_grad():
        torch_out = gen(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (3, 1, 32, 32)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    # Dynamic batch: one tile alone gives the same result as inside a batch (GroupNorm, not BatchNorm).
    (single,) = session.run(["reconstruction"], {"input": x[1:2]})
    np.testing.assert_allclose(single, onnx_out[1:2], atol=1e-5)


def test_shipped_model_fits_its_card() -> None:
    card = load_model_card(ONNX_DIR / "recnet.card.json")
    path = ONNX_DIR / card.onnx_file
    assert path.stat().st_size < 5 * 2**20
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    t = card.tile_size
    assert inp.name == card.input_name and out.name == card.output_name
    assert inp.shape[1:] == [2, t, t] and not isinstance(inp.shape[0], int)
    assert out.shape[1:] == [1, t, t]
    x = np.random.default_rng(1).random((2, 2, t, t), dtype=np.float32)
    (y,) = session.run([card.output_name], {card.input_name: x})
    assert y.shape == (2, 1, t, t) and y.min() >= 0.0 and y.max() <= 1.0
    # The shipped verdict score is the gain over the blur ceiling (docs/evaluation), threshold in its range.
    assert card.score == "ssim_gain"
    low, high = card.score_range
    assert low < card.threshold < high
    assert card.metrics["validation"]["auroc_clearly_wrong"] > 0.8
