"""The REC-Net model card: everything inference must do exactly as training did.

It is a JSON file shipped beside the ONNX model (``onnx_models/recnet.card.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# The verdict score: ``ssim`` = the paper's raw strip SSIM; ``ssim_gain`` = that minus the strip's blur
# ceiling (gate.verify.verifier.frame_scores). Each lies in a known range; a threshold outside it is wrong.
ScoreKind = Literal["ssim", "ssim_gain"]
SCORE_RANGES: dict[str, tuple[float, float]] = {"ssim": (-1.0, 1.0), "ssim_gain": (-2.0, 2.0)}


class Normalization(BaseModel):
    """Robust percentile normalisation to [0, 1] (see ``gate.verify.normalize``)."""

    low_percentile: float = 1.0
    high_percentile: float = 99.0


class ModelCard(BaseModel):
    """Contract between ``gate train``/``gate export`` and the verifier.

    ONNX I/O: input ``input_name`` float32 [N, 2, tile, tile] — channel 0 the normalised image
    with the strip set to 0, channel 1 the binary mask (0/1); output ``output_name`` float32
    [N, 1, tile, tile] in [0, 1], the reconstructed image.
    """

    name: str = "recnet"
    version: str
    onnx_file: str = "recnet.onnx"
    input_name: str = "input"
    output_name: str = "reconstruction"
    tile_size: int = Field(64, ge=16)
    strip_width: int = Field(3, ge=1)
    normalization: Normalization = Normalization()
    # SSIM settings (Gaussian window, as in Wang et al. 2004 and skimage gaussian_weights=True).
    ssim_sigma: float = 1.5
    score: ScoreKind = "ssim"
    blur_sigma: float = Field(1.5, gt=0, description="Gaussian blur of the ceiling (score ssim_gain only)")
    threshold: float = Field(..., description="default per-segment pass threshold on the strip SSIM score")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per segment label overrides")
    reconstruction_loss: str = "ssim"
    training_data: list[str] = Field(default_factory=list)
    training: dict[str, object] = Field(default_factory=dict)
    metrics: dict[str, object] = Field(default_factory=dict)

    def threshold_for(self, label: str) -> float:
        return self.thresholds.get(label, self.threshold)

    @property
    def score_range(self) -> tuple[float, float]:
        return SCORE_RANGES[self.score]


def load_model_card(path: Path) -> ModelCard:
    """Read and validate a model card JSON file."""
    return ModelCard.model_validate(json.loads(Path(path).read_text()))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, recorded with every verdict so that a verdict names its exact model."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
