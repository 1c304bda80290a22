"""The `gate` command as an administrator runs it: verify offline, verdicts, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gate.synth.study import StudyFiles, write_synthetic_study
from tests.conftest import REPO


def gate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gate.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_synthetic_study(tmp_path_factory.mktemp("study"), seed=21, n_slices=8)


def test_verify_json_passes_the_good_seg(study: StudyFiles) -> None:
    done = gate(
        "verify", "--images", str(study.image_paths[0].parent), "--seg", str(study.good_seg_path), "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "pass"
    assert {s["label"] for s in report["segments"]} == set(study.segment_labels)
    for s in report["segments"]:
        assert set(s) >= {"number", "label", "score", "threshold", "verdict", "frames"}
        assert s["verdict"] == "pass" and s["score"] >= s["threshold"] and s["frames"] > 0
    assert report["score"] == min(s["score"] for s in report["segments"])
    assert len(report["model"]["sha256"]) == 64 and report["model"]["provider"] == "CPUExecutionProvider"


def test_verify_json_fails_the_bad_seg_with_exit_1(study: StudyFiles) -> None:
    done = gate(
        "verify", "--images", str(study.image_paths[0].parent), "--seg", str(study.bad_seg_path), "--json"
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "fail"
    by_label = {s["label"]: s for s in report["segments"]}
    assert by_label[study.bad_segment_label]["verdict"] == "fail"


def test_verify_invalid_input_exits_2_with_one_line(tmp_path: Path, study: StudyFiles) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all")
    done = gate("verify", "--images", str(study.image_paths[0].parent), "--seg", str(junk), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "junk.dcm" in done.stderr
    # Sources missing: the SEG names instances that the folder does not hold.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = gate("verify", "--images", str(empty), "--seg", str(study.good_seg_path))
    assert done.returncode == 2 and "not found" in done.stderr


def test_demo_writes_a_study_without_sending(tmp_path: Path) -> None:
    done = gate("demo", "--out", str(tmp_path / "demo"), "--no-send", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "demo" / "seg_good.dcm").exists() and (tmp_path / "demo" / "seg_bad.dcm").exists()
    assert len(list((tmp_path / "demo" / "images").glob("*.dcm"))) >= 8


def test_verdicts_on_an_empty_database(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage_dir: {tmp_path / 'var'}\n")
    done = gate("verdicts", "--json", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
