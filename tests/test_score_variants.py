"""The score-variant study: one reconstruction per case, every variant computed from it, chosen on val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate.model.cases import GOOD, Case
from gate.model.failures import dice
from gate.model.score_variants import VARIANTS, compare, markdown, paint
from gate.verify.recnet import CPU_PROVIDER, RecNetSession
from tests.test_verifier import build_mask_model, make_card


def _cases() -> list[Case]:
    """Squares whose image is the true mask: right masks, masks moved by 1-6 px, one without boundary."""
    out = []
    for k, top in enumerate((8, 12, 16)):
        truth = np.zeros((48, 56), bool)
        truth[top : top + 16, 10 + 4 * k : 26 + 4 * k] = True
        image = np.where(truth, 100.0, 0.0).astype(np.float32) + k  # a different offset per volume
        out.append(Case("s", f"v{k}", "box", image, truth, truth, GOOD, 1.0))
        for shift in (1, 3, 6):
            moved = np.roll(truth, shift, axis=1)
            out.append(Case("s", f"v{k}", "box", image, truth, moved, f"shift_{shift}", dice(moved, truth)))
    out.append(Case("s", "v9", "box", out[0].image, out[0].truth, np.zeros((48, 56), bool), "empty", 0.0))
    return out


def test_oracle_separates_every_variant_and_the_table_lists_them(tmp_path: Path) -> None:
    """The oracle REC-Net paints the mask back: a right mask is perfect, a moved one is not, in every
    variant; the empty mask is skipped, not scored."""
    path = build_mask_model(tmp_path / "oracle.onnx")
    session = RecNetSession(path, make_card(), providers=[CPU_PROVIDER], intra_op_threads=1)
    cases = _cases()
    painted = paint(cases, session)
    assert painted[-1] is None and all(p is not None for p in painted[:-1])
    right = painted[0]
    assert right is not None
    np.testing.assert_allclose(right.composite, right.image, atol=1e-6)
    rows = compare(painted, painted)
    assert [r.name for r in rows] == list(VARIANTS)
    for row in rows:
        assert row.val_auroc_gt == pytest.approx(1.0), row
        assert row.test_auroc_gt == row.val_auroc_gt
    table = markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "shipped ssim_gain" in table
