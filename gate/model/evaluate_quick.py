"""Score correct and wrong masks with a REC-Net exactly as the gate does, and sum up the separation.

Scoring goes through :class:`gate.verify.verifier.Verifier` (normalisation, strip, tiles, stitching,
strip SSIM), so the figures in the model card are the gate's own numbers. A torch generator is wrapped
in :class:`TorchSession`, which offers the part of ``RecNetSession`` the verifier uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate.model.data import ITK_DATA, Frame, wrong_masks
from gate.verify.modelcard import ModelCard
from gate.verify.verifier import Verifier

WRONG_CLEAR = ("shift10", "dilate4", "erode4", "foreign")


class TorchSession:
    """Duck-typed stand-in for ``RecNetSession`` around a torch generator (eval mode, no grad)."""

    provider = "torch-cpu"
    model_sha256 = ""

    def __init__(self, generator: object, card: ModelCard) -> None:
        self.card = card
        self._gen = generator

    def reconstruct(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._gen(torch.from_numpy(batch)).numpy()  # type: ignore[operator]


@dataclass(frozen=True)
class Case:
    """One scored (image, mask) pair: ``kind`` is 'good' or the name of the corruption."""

    source: str
    kind: str
    score: float


def score_cases(
    verifier: Verifier, items: Iterable[tuple[str, np.ndarray, np.ndarray]], seed: int = 0
) -> list[Case]:
    """Score each (source, image, correct mask) and its wrong versions (``data.wrong_masks``).

    ``image`` may be in any units: the verifier normalises it as it would a source frame.
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for source, image, mask in items:
        for kind, m in [("good", mask), *wrong_masks(mask, rng)]:
            result = verifier.score_frame(image, m)
            if result is not None:
                cases.append(Case(source, kind, result.score))
    return cases


def frame_items(frames: Iterable[Frame]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    return ((f.source, f.image, f.mask) for f in frames)


def auroc(good: np.ndarray, bad: np.ndarray) -> float:
    """Probability that a good mask scores above a bad one (Mann-Whitney U, ties count half)."""
    if good.size == 0 or bad.size == 0:
        return float("nan")
    diff = good[:, None] - bad[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def false_reject_threshold(good: np.ndarray, rate: float) -> float:
    """The threshold below which a fraction ``rate`` of the good masks' scores lie (linear quantile).

    A gate that holds back a correct SEG costs a clinician's time on every case; fixing the share of
    correct masks it rejects is the operating point an administrator can reason about, and it transfers
    better to new image sources than Youden's J, whose optimum sits where the validation set's wrong
    masks happen to lie.
    """
    if good.size == 0:
        raise ValueError("no good-mask scores to choose a threshold from")
    return float(np.quantile(good, rate))


def youden_threshold(good: np.ndarray, bad: np.ndarray) -> float:
    """Youden's J: the threshold that maximises (pass rate of good) - (pass rate of bad)."""
    candidates = np.unique(np.concatenate([good, bad]))
    best, best_j = float(candidates[0]), -np.inf
    for t in candidates:
        j = float((good >= t).mean() - (bad >= t).mean())
        if j > best_j:
            best, best_j = float(t), j
    # Midway to the next lower score, so the threshold is not exactly a sample's score.
    lower = candidates[candidates < best]
    return float(0.5 * (best + lower.max())) if lower.size else best


def summarize(cases: list[Case], threshold: float) -> dict[str, object]:
    """AUROC (good vs each kind of wrong mask and vs the clear ones), false rejects and accepts."""
    good = np.array([c.score for c in cases if c.kind == "good"])
    kinds = sorted({c.kind for c in cases} - {"good"})
    out: dict[str, object] = {
        "good_masks": int(good.size),
        "good_score_median": round(float(np.median(good)), 4) if good.size else None,
        "false_reject_rate_good": round(float((good < threshold).mean()), 4) if good.size else None,
    }
    clear = np.array([c.score for c in cases if c.kind in WRONG_CLEAR])
    out["auroc_clearly_wrong"] = round(auroc(good, clear), 4)
    per_kind: dict[str, object] = {}
    for kind in kinds:
        bad = np.array([c.score for c in cases if c.kind == kind])
        per_kind[kind] = {
            "n": int(bad.size),
            "auroc": round(auroc(good, bad), 4),
            "false_accept_rate": round(float((bad >= threshold).mean()), 4),
            "score_median": round(float(np.median(bad)), 4),
        }
    out["wrong"] = per_kind
    return out


# --- held-out real anatomy: the ITK example head images (other subjects, other scanners) ----------


def itk_head_items(slices: Iterable[int] = range(18, 48, 3)) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Real heads never trained on, with masks made by others.

    * ``KmeansTest_T1UCharRaw`` (a T1 head, 2 mm) with the brain mask of ``KmeansTest_T1RawSkullStrip``,
      coronal slices;
    * ``BrainProtonDensitySlice`` and ``BrainT1Slice`` (BrainWeb) with ITK's ``VentricleModel``.
    """
    import nibabel as nib
    from PIL import Image

    t1 = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz").get_fdata(), dtype=np.float32)
    brain = np.asarray(nib.load(ITK_DATA / "KmeansTest_T1RawSkullStrip.nii.gz").get_fdata()) > 0
    items = [(f"itk/KmeansTest_T1/z{z}/brain", t1[:, :, z], brain[:, :, z]) for z in slices]
    ventricle = np.asarray(Image.open(ITK_DATA / "VentricleModel.png")) > 127
    for name in ("BrainProtonDensitySlice.png", "BrainT1Slice.png"):
        img = np.asarray(Image.open(ITK_DATA / name).convert("L"), dtype=np.float32)
        items.append((f"itk/{name}/ventricle", img, ventricle))
    return items


def evaluate(
    verifier: Verifier, items: Iterable[tuple[str, np.ndarray, np.ndarray]], threshold: float
) -> tuple[list[Case], dict[str, object]]:
    cases = score_cases(verifier, items)
    return cases, summarize(cases, threshold)


def print_cases(cases: list[Case], threshold: float, out: Callable[[str], None] = print) -> None:
    for c in cases:
        verdict = "PASS" if c.score >= threshold else "FAIL"
        out(f"{c.source:55s} {c.kind:8s} {c.score:.4f} {verdict}")


def main(onnx_dir: Path = Path("onnx_models")) -> None:
    """Evaluate the shipped ONNX model on the ITK heads (``python -m gate.model.evaluate_quick``)."""
    from gate.verify.recnet import load_shipped_model

    session = load_shipped_model(onnx_dir)
    verifier = Verifier(session)
    cases, summary = evaluate(verifier, itk_head_items(), session.card.threshold)
    print_cases(cases, session.card.threshold)
    print(summary)


if __name__ == "__main__":
    main()
