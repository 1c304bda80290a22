"""Per-label thresholds for a target sensitivity, and writing them into config.yaml in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from gate.model.calibrate import (
    LabelledScore,
    calibrate,
    threshold_for_sensitivity,
    thresholds_mapping,
    update_config_thresholds,
)


def test_threshold_rejects_the_target_share_of_bad() -> None:
    bad = [0.1, 0.2, 0.3, 0.4]
    t = threshold_for_sensitivity([0.9], bad, 0.75)  # reject 3 of 4: just above 0.3
    assert 0.3 < t < 0.31
    assert np.mean(np.asarray(bad) < t) == 0.75
    assert threshold_for_sensitivity([], bad, 1.0) > 0.4
    with pytest.raises(ValueError):
        threshold_for_sensitivity([0.5], [], 0.9)


def test_calibrate_per_label() -> None:
    scores = [
        LabelledScore("Liver", s, g, "x") for s, g in [(0.9, True), (0.8, True), (0.5, False), (0.85, False)]
    ]
    scores.append(LabelledScore("Lesion", 0.7, True, "y"))
    found = {t.segment: t for t in calibrate(scores, 1.0)}
    assert found["Liver"].sensitivity == 1.0 and found["Liver"].false_reject == 0.5
    assert np.isnan(found["Lesion"].threshold)
    assert thresholds_mapping(list(found.values())) == {"Liver": pytest.approx(0.8501)}


def test_update_config_keeps_other_keys_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "# top comment\nae_title: QGATE\n# thresholds comment\n"
        "thresholds:\n  Old: 0.5\n  Liver: 0.1\nport: 11112\n"
    )
    text = update_config_thresholds(path, {"Liver": 0.62, "Lesion": 0.7})
    assert "# top comment" in text and "# thresholds comment" in text
    data = yaml.safe_load(path.read_text())
    assert data == {
        "ae_title": "QGATE",
        "thresholds": {"Old": 0.5, "Liver": 0.62, "Lesion": 0.7},
        "port": 11112,
    }
    empty = tmp_path / "flow.yaml"
    empty.write_text("port: 1\nthresholds: {}\nretry: {factor: 2}\n")
    update_config_thresholds(empty, {"A": 0.3})
    assert yaml.safe_load(empty.read_text()) == {"port": 1, "thresholds": {"A": 0.3}, "retry": {"factor": 2}}


SHIPPED = Path(__file__).resolve().parents[1] / "onnx_models" / "recnet.card.json"


def test_calibrate_a_labelled_dicom_set(tmp_path: Path) -> None:
    """Score a site's labelled SEGs with the gate's own decoding and verifier, then write config.yaml."""
    from gate.model.calibrate import score_dicom_set
    from gate.synth.study import write_synthetic_study
    from gate.verify.recnet import load_shipped_model
    from gate.verify.verifier import Verifier

    study = write_synthetic_study(tmp_path / "s0", seed=0, n_slices=6)
    rows = ["seg,segment,label"]
    for label in study.segment_labels:
        rows.append(f"s0/seg_good.dcm,{label},good")
        rows.append(f"s0/seg_bad.dcm,{label},{'bad' if label == study.bad_segment_label else 'good'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    scores = score_dicom_set(tmp_path, tmp_path / "labels.csv", Verifier(load_shipped_model(SHIPPED.parent)))
    assert len(scores) == 4 and sum(not s.good for s in scores) == 1
    found = {t.segment: t for t in calibrate(scores, 1.0)}
    assert found[study.bad_segment_label].sensitivity == 1.0
    config = tmp_path / "config.yaml"
    config.write_text("ae_title: QGATE\nthresholds: {}\n")
    update_config_thresholds(config, thresholds_mapping(list(found.values())))
    assert set(yaml.safe_load(config.read_text())["thresholds"]) == {study.bad_segment_label}
