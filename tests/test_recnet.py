"""RecNetSession on a small ONNX graph built here: provider, I/O contract, batching, wrapped errors."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage

from gate.verify.modelcard import ModelCard
from gate.verify.recnet import (
    CARD_FILE,
    CPU_PROVIDER,
    CUDA_PROVIDER,
    ModelError,
    RecNetSession,
    default_providers,
    load_shipped_model,
)

TILE = 16
BLUR = 5  # a fixed BLUR x BLUR box blur of channel 0
MASK_GAIN = 0.5


def build_model(
    path: Path,
    *,
    image_gain: float = 1.0,
    mask_gain: float = MASK_GAIN,
    tile: int | str = "T",
    input_name: str = "input",
    output_name: str = "reconstruction",
) -> Path:
    """output = clip(image_gain * boxblur5(ch0) + mask_gain * ch1, 0, 1) as one Conv and one Clip."""
    weight = np.zeros((1, 2, BLUR, BLUR), dtype=np.float32)
    weight[0, 0] = image_gain / BLUR**2
    weight[0, 1, BLUR // 2, BLUR // 2] = mask_gain
    nodes = [
        helper.make_node("Conv", [input_name, "w"], ["raw"], pads=[BLUR // 2] * 4),
        helper.make_node("Clip", ["raw", "lo", "hi"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes,
        "test_recnet",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 2, tile, tile])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1, tile, tile])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
            numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected_output(batch: np.ndarray, image_gain: float = 1.0, mask_gain: float = MASK_GAIN) -> np.ndarray:
    blur = np.stack([ndimage.uniform_filter(b[0].astype(np.float64), BLUR, mode="constant") for b in batch])
    return np.clip(image_gain * blur + mask_gain * batch[:, 1], 0.0, 1.0)[:, None]


def make_card(**overrides: object) -> ModelCard:
    fields: dict[str, object] = {"version": "0.0-test", "tile_size": TILE, "threshold": 0.8}
    fields.update(overrides)
    return ModelCard.model_validate(fields)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return build_model(tmp_path / "recnet.onnx")


def _batch(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = rng.random((n, 2, TILE, TILE)).astype(np.float32)
    batch[:, 1] = batch[:, 1] > 0.5
    return batch


def test_default_provider_is_cuda_when_available_else_cpu(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = CUDA_PROVIDER if CUDA_PROVIDER in ort.get_available_providers() else CPU_PROVIDER
    assert default_providers()[0] == expected
    with caplog.at_level(logging.INFO, logger="gate.verify"):
        session = RecNetSession(model_path, make_card(), intra_op_threads=1)
    assert session.provider == expected
    assert any(expected in r.getMessage() for r in caplog.records if r.name == "gate.verify")


def test_properties(model_path: Path) -> None:
    card = make_card()
    session = RecNetSession(model_path, card, providers=[CPU_PROVIDER], intra_op_threads=1)
    assert session.provider == CPU_PROVIDER
    assert session.model_sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert session.card is card


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_reconstruct_computes_the_graph_in_batches(model_path: Path, batch_size: int) -> None:
    session = RecNetSession(
        model_path, make_card(), providers=[CPU_PROVIDER], batch_size=batch_size, intra_op_threads=1
    )
    batch = _batch(5)
    out = session.reconstruct(batch)
    assert out.shape == (5, 1, TILE, TILE) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected_output(batch), atol=1e-5)


def test_reconstruct_empty_batch(model_path: Path) -> None:
    session = RecNetSession(model_path, make_card(), providers=[CPU_PROVIDER], intra_op_threads=1)
    assert session.reconstruct(np.zeros((0, 2, TILE, TILE), np.float32)).shape == (0, 1, TILE, TILE)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (np.zeros((2, 2, TILE, TILE), np.float64), "float32"),
        (np.zeros((2, 3, TILE, TILE), np.float32), r"\[N, 2, 16, 16\]"),
        (np.zeros((2, 2, TILE, TILE + 1), np.float32), r"\[N, 2, 16, 16\]"),
        (np.zeros((2, TILE, TILE), np.float32), r"\[N, 2, 16, 16\]"),
        ([[0.0]], "numpy array"),
    ],
)
def test_reconstruct_rejects_bad_batches(model_path: Path, batch: object, match: str) -> None:
    session = RecNetSession(model_path, make_card(), providers=[CPU_PROVIDER], intra_op_threads=1)
    with pytest.raises(ValueError, match=match):
        session.reconstruct(batch)  # type: ignore[arg-type]


def test_missing_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        RecNetSession(tmp_path / "absent.onnx", make_card())


def test_corrupt_model_is_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="cannot load") as info:
        RecNetSession(path, make_card(), providers=[CPU_PROVIDER])
    assert info.value.__cause__ is not None


def test_card_and_graph_must_agree(tmp_path: Path) -> None:
    path = build_model(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="no input 'image'"):
        RecNetSession(path, make_card(input_name="image"), providers=[CPU_PROVIDER])
    with pytest.raises(ModelError, match="no output 'out'"):
        RecNetSession(path, make_card(output_name="out"), providers=[CPU_PROVIDER])
    fixed = build_model(tmp_path / "fixed.onnx", tile=32)
    with pytest.raises(ModelError, match="does not fit"):
        RecNetSession(fixed, make_card(), providers=[CPU_PROVIDER])
    assert RecNetSession(fixed, make_card(tile_size=32), providers=[CPU_PROVIDER]).card.tile_size == 32


def test_load_shipped_model_reads_the_card(tmp_path: Path) -> None:
    build_model(tmp_path / "recnet-v7.onnx")
    card = make_card(onnx_file="recnet-v7.onnx", version="7")
    (tmp_path / CARD_FILE).write_text(card.model_dump_json())
    session = load_shipped_model(tmp_path, providers=[CPU_PROVIDER], batch_size=3)
    assert session.card == card
    assert session.batch_size == 3
    assert session.reconstruct(_batch(4)).shape == (4, 1, TILE, TILE)


def test_load_shipped_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model card not found"):
        load_shipped_model(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps({"version": "1"}))  # no threshold
    with pytest.raises(ModelError, match="invalid model card") as info:
        load_shipped_model(tmp_path)
    assert info.value.__cause__ is not None
    (tmp_path / CARD_FILE).write_text(make_card().model_dump_json())
    with pytest.raises(ModelError, match="not found"):  # card names recnet.onnx, which is absent
        load_shipped_model(tmp_path)
