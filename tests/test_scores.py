"""Scores of gate.model.scores: non-learned ones on a painted structure, local optimality on a toy oracle."""

from __future__ import annotations

import numpy as np

from gate.model.failures import shift
from gate.model.scores import (
    StripScorer,
    all_scores,
    boundary_gradient,
    common_strip,
    fill_ssim,
    local_optimality,
    neighbour_masks,
)
from gate.synth.phantom import blob_mask, paint_structure
from gate.verify.modelcard import ModelCard


def painted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    background = 0.3 + 0.05 * rng.normal(size=(96, 96))
    from scipy import ndimage

    background = ndimage.gaussian_filter(background, 2.0)
    mask = blob_mask((96, 96), (48.0, 48.0), (18.0, 14.0), rng, irregularity=0.2)
    image = paint_structure(
        background.astype(np.float32), mask, rng, contrast=0.4, edge_sigma=0.8, texture=0.02
    )
    return image * 1000.0, mask  # modality units: the scores normalise like the gate


def test_non_learned_scores_prefer_the_correct_mask() -> None:
    image, mask = painted()
    moved = shift(mask, 5, -4)
    assert boundary_gradient(image, mask) > boundary_gradient(image, moved)
    assert fill_ssim(image, mask) > fill_ssim(image, moved)
    row_good, row_bad = all_scores(image, [mask, moved], None)
    assert row_good["fill_local"] > 0 > row_bad["fill_local"]


class Oracle:
    """A 'REC-Net' that paints the mask itself: perfect when the mask is the truth of a 0/1 image."""

    def __init__(self) -> None:
        self.card = ModelCard(version="oracle", threshold=0.5, tile_size=32, strip_width=2)
        self.calls = 0

    def reconstruct(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return batch[:, 1:2].copy()


def test_local_optimality_sign_on_an_oracle() -> None:
    truth = np.zeros((80, 80), bool)
    truth[20:55, 25:60] = True
    image = truth.astype(np.float32)
    oracle = Oracle()
    scorer = StripScorer(oracle)
    assert scorer.ssim(image, truth) > scorer.ssim(image, shift(truth, 4, 0))
    good = scorer.ssim_local(image, truth)
    bad = scorer.ssim_local(image, shift(truth, 5, 3))
    assert good > 0 > bad
    # the mask and all its neighbours go through one batched REC-Net call
    oracle.calls = 0
    (row,) = all_scores(image, [truth], scorer, classic=False)
    assert oracle.calls == 1
    assert row["ssim"] == scorer.ssim(image, truth)
    assert row["ssim_local"] == scorer.ssim_local(image, truth) > 0


def test_local_optimality_helpers() -> None:
    assert local_optimality(0.9, [0.5, 0.7]) == 0.9 - 0.7
    assert local_optimality(0.4, [0.5, float("nan")]) == 0.4 - 0.5
    assert np.isnan(local_optimality(0.4, []))
    m = np.zeros((30, 30), bool)
    m[10:20, 10:20] = True
    ns = neighbour_masks(m, 2)
    assert len(ns) == 6
    strip = common_strip([m, *ns], 2)
    assert strip[10, 10] and not strip[15, 15] and not strip[0, 0]
