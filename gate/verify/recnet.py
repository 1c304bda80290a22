"""The one ONNX Runtime session that runs the REC-Net (arXiv 2310.16999, sec. 2).

Everything else in ``gate.verify`` is plain numpy; this module is the boundary to ONNX Runtime, whose
errors it wraps in :class:`ModelError` so callers catch one named exception.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gate.verify.modelcard import ModelCard, file_sha256, load_model_card

log = logging.getLogger("gate.verify")

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
DEFAULT_BATCH_SIZE = 64
# REC-Net input channels: the image with the strip blanked, and the mask.
INPUT_CHANNELS = 2
OUTPUT_CHANNELS = 1

DEFAULT_ONNX_DIR = Path(__file__).resolve().parents[2] / "onnx_models"
CARD_FILE = "recnet.card.json"


def _ort_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's pybind exceptions derive from Exception directly; name the ones it raises."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    found = tuple(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type))
    return (*found, RuntimeError)


_ORT_ERRORS = _ort_errors()


class ModelError(Exception):
    """The REC-Net model cannot be loaded or run (missing file, bad graph, card/graph mismatch)."""


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always as the fallback."""
    available = ort.get_available_providers()
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


def _static_dim(dim: object) -> int | None:
    return dim if isinstance(dim, int) else None


class RecNetSession:
    """REC-Net inference on batches of tiles [N, 2, T, T] → reconstructions [N, 1, T, T].

    ``provider`` is the execution provider ONNX Runtime actually uses (it falls back to CPU silently
    when CUDA cannot start), so that each verdict records where it was computed.
    """

    def __init__(
        self,
        model_path: Path,
        card: ModelCard,
        *,
        providers: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        intra_op_threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(f"REC-Net model file not found: {model_path}")
        self._card = card
        self._batch_size = batch_size
        self._model_path = model_path
        self._sha256 = file_sha256(model_path)
        requested = list(providers) if providers is not None else default_providers()
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=requested)
        except _ORT_ERRORS as exc:
            raise ModelError(f"cannot load REC-Net model {model_path}: {exc}") from exc
        self._check_io()
        self._provider = self._session.get_providers()[0]
        if requested and self._provider != requested[0]:
            log.warning(
                "REC-Net %s: requested %s but ONNX Runtime runs %s",
                model_path.name,
                requested[0],
                self._provider,
            )
        log.info(
            "REC-Net %s %s (sha256 %s) runs on %s", card.name, card.version, self._sha256[:12], self._provider
        )

    def _check_io(self) -> None:
        """Hold the graph to the card's I/O contract now, not at the first SEG."""
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if self._card.input_name not in inputs:
            raise ModelError(f"model has no input {self._card.input_name!r} (has {sorted(inputs)})")
        if self._card.output_name not in outputs:
            raise ModelError(f"model has no output {self._card.output_name!r} (has {sorted(outputs)})")
        shape = inputs[self._card.input_name].shape
        t = self._card.tile_size
        expected = (None, INPUT_CHANNELS, t, t)
        if len(shape) != len(expected) or any(
            _static_dim(d) is not None and e is not None and d != e
            for d, e in zip(shape, expected, strict=True)
        ):
            raise ModelError(f"model input shape {shape} does not fit the card's [N, 2, {t}, {t}]")

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def model_sha256(self) -> str:
        return self._sha256

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def reconstruct(self, batch: np.ndarray) -> np.ndarray:
        """Run the REC-Net on ``batch`` [N, 2, T, T] float32, ``batch_size`` tiles at a time."""
        t = self._card.tile_size
        if not isinstance(batch, np.ndarray):
            raise ValueError(f"batch must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise ValueError(f"batch must be float32, got {batch.dtype}")
        if batch.ndim != 4 or batch.shape[1:] != (INPUT_CHANNELS, t, t):
            raise ValueError(f"batch must be [N, {INPUT_CHANNELS}, {t}, {t}], got {batch.shape}")
        n = batch.shape[0]
        out = np.empty((n, OUTPUT_CHANNELS, t, t), dtype=np.float32)
        for start in range(0, n, self._batch_size):
            chunk = np.ascontiguousarray(batch[start : start + self._batch_size])
            try:
                (result,) = self._session.run([self._card.output_name], {self._card.input_name: chunk})
            except _ORT_ERRORS as exc:
                raise ModelError(f"REC-Net inference failed on {self._model_path.name}: {exc}") from exc
            if result.shape != (chunk.shape[0], OUTPUT_CHANNELS, t, t):
                raise ModelError(f"REC-Net returned shape {result.shape} for input {chunk.shape}")
            out[start : start + chunk.shape[0]] = result
        return out


def load_shipped_model(
    onnx_dir: Path = DEFAULT_ONNX_DIR,
    *,
    providers: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RecNetSession:
    """Load the REC-Net shipped in ``onnx_dir``: ``recnet.card.json`` names the ONNX file beside it."""
    card_path = Path(onnx_dir) / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"model card not found: {card_path} (train and export the REC-Net first)")
    try:
        card = load_model_card(card_path)
    except ValueError as exc:  # pydantic.ValidationError and json.JSONDecodeError are ValueErrors
        raise ModelError(f"invalid model card {card_path}: {exc}") from exc
    return RecNetSession(Path(onnx_dir) / card.onnx_file, card, providers=providers, batch_size=batch_size)
