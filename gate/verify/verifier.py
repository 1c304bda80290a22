"""Verify a SEG: per segment and source frame, REC-Net reconstruction of the strip, then strip SSIM.

The method of arXiv 2310.16999 ("Trust, but Verify"), sec. 2: a correct mask leads the REC-Net to paint
the blanked boundary strip back as it was, a wrong mask misleads it, and SSIM between the reconstruction
and the original over the strip says which happened. The numerics are pure functions below
(:func:`frame_inputs`, :func:`frame_score`, :func:`aggregate_segment`, :func:`seg_verdict`); the
:class:`Verifier` only validates the input and glues them around the one ONNX session.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gate.verify.inputs import SegmentMasks, VerificationInput
from gate.verify.modelcard import ModelCard, ScoreKind
from gate.verify.normalize import normalize_robust
from gate.verify.recnet import RecNetSession
from gate.verify.result import FrameScore, ModelInfo, SegmentResult, SegResult, Verdict
from gate.verify.ssim import blurred_strip_ssim, strip_ssim
from gate.verify.strip import boundary_strip, has_boundary
from gate.verify.tiles import TileGrid, extract_tiles, plan_tiles, stitch

log = logging.getLogger("gate.verify")

# Score of a segment (or SEG) with nothing to verify: the lowest value, so it can never pass.
NOTHING_VERIFIED_SCORE = 0.0


@dataclass(frozen=True)
class FrameInputs:
    """One frame prepared for the REC-Net: its tiles, where they lie, and the strip to judge."""

    image: np.ndarray  # normalised [0, 1] float32 frame
    strip: np.ndarray  # boolean strip around the mask boundary
    grid: TileGrid
    batch: np.ndarray  # float32 [N, 2, T, T]: image with strip blanked, mask


def frame_inputs(image_norm: np.ndarray, mask: np.ndarray, strip: np.ndarray, tile: int) -> FrameInputs:
    """Build the REC-Net input [image × (1 − strip), mask] on the tiles that hold strip pixels."""
    strip = np.asarray(strip, dtype=bool)
    mask_f = np.asarray(mask, dtype=bool).astype(np.float32)
    blanked = np.where(strip, np.float32(0.0), image_norm).astype(np.float32)
    grid = plan_tiles(strip, tile)
    batch = extract_tiles(np.stack([blanked, mask_f]), grid)
    return FrameInputs(image=image_norm, strip=strip, grid=grid, batch=batch)


def frame_scores(
    inputs: FrameInputs,
    reconstructions: np.ndarray,
    *,
    sigma: float,
    score: ScoreKind = "ssim",
    blur_sigma: float = 1.5,
) -> tuple[float, float, int]:
    """The frame's verdict score, its raw strip SSIM and its number of strip pixels.

    ``ssim``: strip SSIM of the stitched composite against the original (arXiv 2310.16999);
    ``ssim_gain``: that minus the strip's blur ceiling (:func:`gate.verify.ssim.blurred_strip_ssim`).
    The raw SSIM is returned beside the score so that a report can show both.
    """
    composite = stitch(reconstructions, inputs.grid, inputs.image, inputs.strip)
    ssim = strip_ssim(composite, inputs.image, inputs.strip, sigma=sigma)
    value = ssim
    if score == "ssim_gain":
        value = ssim - blurred_strip_ssim(inputs.image, inputs.strip, sigma=sigma, blur_sigma=blur_sigma)
    return value, ssim, int(inputs.strip.sum())


def frame_score(inputs: FrameInputs, reconstructions: np.ndarray, *, sigma: float) -> tuple[float, int]:
    """The frame's raw strip SSIM (the paper's score) and its number of strip pixels."""
    _, ssim, pixels = frame_scores(inputs, reconstructions, sigma=sigma)
    return ssim, pixels


def card_frame_scores(
    inputs: FrameInputs, reconstructions: np.ndarray, card: ModelCard
) -> tuple[float, float, int]:
    """:func:`frame_scores` with the model card's score settings (what the gate deploys)."""
    return frame_scores(
        inputs, reconstructions, sigma=card.ssim_sigma, score=card.score, blur_sigma=card.blur_sigma
    )


def resolve_threshold(label: str, card: ModelCard, overrides: Mapping[str, float] | None = None) -> float:
    """The administrator's per-label threshold, else the card's per-label one, else the card default."""
    if overrides is not None and label in overrides:
        return float(overrides[label])
    return card.threshold_for(label)


def aggregate_segment(
    number: int, label: str, frame_scores: Sequence[FrameScore], threshold: float
) -> SegmentResult:
    """Strip-pixel-weighted mean of the frame scores, the worst frame, and the verdict score >= threshold.

    Weighting by strip pixels lets a frame with a long boundary count for more than a frame that only
    grazes the structure. A segment without any scored frame FAILs with score 0: the gate could not check
    it, and an unchecked segmentation must not reach the PACS looking verified.
    """
    if not frame_scores:
        return SegmentResult(
            number=number,
            label=label,
            score=NOTHING_VERIFIED_SCORE,
            worst_frame_score=NOTHING_VERIFIED_SCORE,
            worst_frame_uid="",
            threshold=threshold,
            verdict=Verdict.FAIL,
            frames=0,
            frame_scores=(),
        )
    weights = np.array([f.strip_pixels for f in frame_scores], dtype=np.float64)
    if np.any(weights <= 0):
        raise ValueError("every scored frame must have at least one strip pixel")
    scores = np.array([f.score for f in frame_scores], dtype=np.float64)
    score = float(np.sum(weights * scores) / np.sum(weights))
    raw = [f.ssim for f in frame_scores if f.ssim is not None]
    # The paper's raw strip SSIM beside the verdict score, weighted alike, when every frame has it.
    ssim = float(np.sum(weights * np.array(raw)) / np.sum(weights)) if len(raw) == len(frame_scores) else None
    worst = min(frame_scores, key=lambda f: f.score)
    return SegmentResult(
        number=number,
        label=label,
        score=score,
        worst_frame_score=worst.score,
        worst_frame_uid=worst.source_sop_instance_uid,
        threshold=threshold,
        verdict=Verdict.PASS if score >= threshold else Verdict.FAIL,
        frames=len(frame_scores),
        frame_scores=tuple(frame_scores),
        ssim=ssim,
    )


def seg_verdict(segments: Sequence[SegmentResult]) -> tuple[Verdict, float]:
    """A SEG passes iff every segment passes; its score is the lowest segment score.

    A SEG without segments FAILs with score 0, for the same reason as an empty segment.
    """
    if not segments:
        return Verdict.FAIL, NOTHING_VERIFIED_SCORE
    verdict = Verdict.PASS if all(s.verdict is Verdict.PASS for s in segments) else Verdict.FAIL
    return verdict, min(s.score for s in segments)


def validate_input(inp: VerificationInput) -> None:
    """Reject a SEG whose masks do not match its source frames, before any work is done."""
    for uid, image in inp.images.items():
        if np.ndim(image) != 2:
            raise ValueError(
                f"SEG {inp.seg_sop_instance_uid}: source {uid} is not a 2-D frame ({np.shape(image)})"
            )
    for segment in inp.segments:
        for uid, mask in segment.masks.items():
            if uid not in inp.images:
                raise ValueError(
                    f"SEG {inp.seg_sop_instance_uid} segment {segment.number} references source {uid}, "
                    "which is not among the images"
                )
            if np.shape(mask) != np.shape(inp.images[uid]):
                raise ValueError(
                    f"SEG {inp.seg_sop_instance_uid} segment {segment.number}: mask shape {np.shape(mask)} "
                    f"differs from source {uid} shape {np.shape(inp.images[uid])}"
                )


@dataclass
class _Clock:
    reconstruct: float = 0.0
    ssim: float = 0.0


class Verifier:
    """Scores SEGs with one REC-Net session and turns scores into verdicts.

    ``thresholds`` (per segment label, from the administrator's config) override the model card's.
    """

    def __init__(self, session: RecNetSession, *, thresholds: Mapping[str, float] | None = None) -> None:
        overrides = dict(thresholds or {})
        low, high = session.card.score_range
        for label, value in overrides.items():
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"threshold for {label!r} must lie in [{low}, {high}] (the range of the model's "
                    f"{session.card.score} score), got {value}"
                )
        self._session = session
        self._thresholds = overrides

    @property
    def card(self) -> ModelCard:
        return self._session.card

    def threshold_for(self, label: str) -> float:
        return resolve_threshold(label, self.card, self._thresholds)

    def _normalize(self, image: np.ndarray) -> np.ndarray:
        norm = self.card.normalization
        return normalize_robust(image, norm.low_percentile, norm.high_percentile)

    def _score_segment_frames(
        self, frames: Sequence[tuple[str, np.ndarray, np.ndarray]], clock: _Clock
    ) -> list[FrameScore]:
        """Score (uid, normalised image, mask) frames with one REC-Net call, so tiles batch across frames."""
        prepared: list[tuple[str, FrameInputs]] = []
        for uid, image_norm, mask in frames:
            if not has_boundary(mask):
                continue
            strip = boundary_strip(mask, self.card.strip_width)
            prepared.append((uid, frame_inputs(image_norm, mask, strip, self.card.tile_size)))
        if not prepared:
            return []
        start = time.perf_counter()
        reconstructions = self._session.reconstruct(np.concatenate([p.batch for _, p in prepared]))
        clock.reconstruct += time.perf_counter() - start
        start = time.perf_counter()
        scores: list[FrameScore] = []
        offset = 0
        for uid, inputs in prepared:
            n = len(inputs.grid)
            score, ssim, pixels = card_frame_scores(inputs, reconstructions[offset : offset + n], self.card)
            offset += n
            scores.append(
                FrameScore(source_sop_instance_uid=uid, score=score, strip_pixels=pixels, ssim=ssim)
            )
        clock.ssim += time.perf_counter() - start
        return scores

    def score_frame(self, image: np.ndarray, mask: np.ndarray, *, source_uid: str = "") -> FrameScore | None:
        """Verdict score of one mask on one source frame (modality units); None without a boundary."""
        if np.ndim(image) != 2 or np.shape(mask) != np.shape(image):
            raise ValueError(f"mask shape {np.shape(mask)} must equal the 2-D image shape {np.shape(image)}")
        mask = np.asarray(mask, dtype=bool)
        scores = self._score_segment_frames([(source_uid, self._normalize(image), mask)], _Clock())
        return scores[0] if scores else None

    def _verify_segment(
        self, segment: SegmentMasks, normalized: Mapping[str, np.ndarray], clock: _Clock
    ) -> SegmentResult:
        frames = [(uid, normalized[uid], np.asarray(m, dtype=bool)) for uid, m in segment.masks.items()]
        scores = self._score_segment_frames(frames, clock)
        return aggregate_segment(segment.number, segment.label, scores, self.threshold_for(segment.label))

    def verify(self, inp: VerificationInput) -> SegResult:
        """Verdict on a whole SEG; ``timings`` holds verify, reconstruct (ONNX) and ssim seconds."""
        started = time.perf_counter()
        validate_input(inp)
        clock = _Clock()
        needed = {uid for segment in inp.segments for uid in segment.masks}
        # Normalise each source frame once, however many segments cover it.
        normalized = {uid: self._normalize(inp.images[uid]) for uid in sorted(needed)}
        segments = tuple(self._verify_segment(s, normalized, clock) for s in inp.segments)
        verdict, score = seg_verdict(segments)
        for s in segments:
            log.debug(
                "SEG %s study %s segment %d %r: score %.4f threshold %.4f over %d frames, "
                "worst %.4f on %s -> %s",
                inp.seg_sop_instance_uid,
                inp.study_instance_uid,
                s.number,
                s.label,
                s.score,
                s.threshold,
                s.frames,
                s.worst_frame_score,
                s.worst_frame_uid or "-",
                s.verdict,
            )
            if s.frames == 0:
                log.warning(
                    "SEG %s study %s segment %d %r has no boundary on any frame: nothing to verify, FAIL",
                    inp.seg_sop_instance_uid,
                    inp.study_instance_uid,
                    s.number,
                    s.label,
                )
        card = self.card
        model = ModelInfo(
            name=card.name,
            version=card.version,
            sha256=self._session.model_sha256,
            provider=self._session.provider,
            score=card.score,
        )
        timings = {
            "verify": time.perf_counter() - started,
            "reconstruct": clock.reconstruct,
            "ssim": clock.ssim,
        }
        log.info(
            "SEG %s study %s: %s (score %.4f, %d segments) in %.2fs on %s",
            inp.seg_sop_instance_uid,
            inp.study_instance_uid,
            verdict,
            score,
            len(segments),
            timings["verify"],
            model.provider,
        )
        return SegResult(
            seg_sop_instance_uid=inp.seg_sop_instance_uid,
            study_instance_uid=inp.study_instance_uid,
            verdict=verdict,
            score=score,
            segments=segments,
            model=model,
            timings=timings,
        )
