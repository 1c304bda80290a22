"""The JSON report: its shape, JSON-native types, and the atomic write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gate.report import incomplete_report, verification_report, write_json_report
from gate.verify.result import FrameScore, ModelInfo, SegmentResult, SegResult, Verdict

SEG_UID = "1.2.826.0.1.3680043.8.498.1"
STUDY_UID = "1.2.826.0.1.3680043.8.498.2"
SOURCE_UIDS = ("1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11")


def make_result() -> SegResult:
    """Two segments, the second failing; scores as numpy scalars, as the verifier computes them."""
    liver = SegmentResult(
        number=1,
        label="Liver",
        score=np.float32(0.9134),
        worst_frame_score=np.float64(0.8712),
        worst_frame_uid=SOURCE_UIDS[1],
        threshold=0.8,
        verdict=Verdict.PASS,
        frames=np.int64(2),
        frame_scores=(
            FrameScore(SOURCE_UIDS[0], np.float32(0.95), np.int64(40), ssim=np.float64(0.97)),
            FrameScore(SOURCE_UIDS[1], np.float64(0.8712), 60),
        ),
        ssim=np.float64(0.93),
    )
    tumour = SegmentResult(
        number=2,
        label="Tumour",
        score=0.612,
        worst_frame_score=0.612,
        worst_frame_uid=SOURCE_UIDS[0],
        threshold=0.8,
        verdict=Verdict.FAIL,
        frames=1,
    )
    return SegResult(
        seg_sop_instance_uid=SEG_UID,
        study_instance_uid=STUDY_UID,
        verdict=Verdict.FAIL,
        score=0.612,
        segments=(liver, tumour),
        model=ModelInfo(name="REC-Net", version="0.3.1", sha256="ab" * 32, provider="CPUExecutionProvider"),
        timings={"assemble": 0.5, "verify": np.float64(1.25)},
    )


def assert_json_native(value: object) -> None:
    if isinstance(value, dict):
        assert all(type(key) is str for key in value)
        for item in value.values():
            assert_json_native(item)
    elif isinstance(value, list):
        for item in value:
            assert_json_native(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{value!r} is a {type(value)}"


def test_verification_report_shape() -> None:
    report = verification_report(make_result())

    assert report["verdict"] == "fail"
    assert report["score"] == pytest.approx(0.612)
    assert report["seg_sop_instance_uid"] == SEG_UID
    assert report["study_instance_uid"] == STUDY_UID
    assert report["model"] == {
        "name": "REC-Net",
        "version": "0.3.1",
        "sha256": "ab" * 32,
        "provider": "CPUExecutionProvider",
    }
    assert report["timings"] == {"assemble": 0.5, "verify": 1.25}
    assert [s["number"] for s in report["segments"]] == [1, 2]
    liver, tumour = report["segments"]
    assert set(liver) >= {
        "number",
        "label",
        "score",
        "threshold",
        "verdict",
        "frames",
        "worst_frame_score",
        "worst_frame_uid",
    }
    assert (liver["label"], liver["verdict"], liver["frames"]) == ("Liver", "pass", 2)
    assert liver["score"] == pytest.approx(0.9134, abs=1e-6)
    assert liver["worst_frame_uid"] == SOURCE_UIDS[1]
    assert liver["frame_scores"][0] == {
        "source_sop_instance_uid": SOURCE_UIDS[0],
        "score": pytest.approx(0.95, abs=1e-6),
        "ssim": pytest.approx(0.97),
        "strip_pixels": 40,
    }
    # The raw strip SSIM beside the score where the verifier computed it, null where it did not.
    assert (liver["ssim"], tumour["ssim"], liver["frame_scores"][1]["ssim"]) == (
        pytest.approx(0.93),
        None,
        None,
    )
    assert (tumour["verdict"], tumour["threshold"], tumour["frame_scores"]) == ("fail", 0.8, [])


def test_verification_report_is_json_native_and_round_trips() -> None:
    report = verification_report(make_result())

    assert_json_native(report)
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_a_score_that_is_not_finite_becomes_null() -> None:
    result = make_result()
    empty = SegmentResult(
        number=3,
        label="Empty",
        score=math.nan,
        worst_frame_score=math.nan,
        worst_frame_uid="",
        threshold=0.8,
        verdict=Verdict.FAIL,
        frames=0,
    )
    report = verification_report(SegResult(**{**result.__dict__, "segments": (*result.segments, empty)}))

    assert (report["segments"][2]["score"], report["segments"][2]["worst_frame_score"]) == (None, None)
    json.dumps(report, allow_nan=False)


def test_incomplete_report() -> None:
    missing = [SOURCE_UIDS[1], SOURCE_UIDS[0], SOURCE_UIDS[1]]
    report = incomplete_report(SEG_UID, STUDY_UID, missing, np.float64(300))

    assert report == {
        "verdict": "incomplete",
        "seg_sop_instance_uid": SEG_UID,
        "study_instance_uid": STUDY_UID,
        "missing": [SOURCE_UIDS[1], SOURCE_UIDS[0]],
        "waited_seconds": 300.0,
    }
    assert_json_native(report)
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize(
    ("missing", "waited", "message"),
    [
        ([], 10.0, "no missing source instances"),
        (SOURCE_UIDS, -1.0, "waited_seconds"),
        (SOURCE_UIDS, math.inf, "waited_seconds"),
    ],
)
def test_incomplete_report_rejects_nonsense(missing: tuple[str, ...], waited: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        incomplete_report(SEG_UID, STUDY_UID, missing, waited)


def test_write_json_report_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    report = verification_report(make_result())

    write_json_report(report, path)

    assert json.loads(path.read_text(encoding="utf-8")) == report
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_json_report_refuses_nan_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    with pytest.raises(ValueError):
        write_json_report({"score": math.nan}, path)

    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
