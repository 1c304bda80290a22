"""Scored evaluation cases: (image, ground truth, mask under test, its true Dice), split by volume.

Each frame of a volume with a structure whose boundary is long enough gives one ``good`` case (the
ground truth itself) and the failure modes of :func:`gate.model.failures.failure_masks`, mild to gross.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gate.model.failures import dice, failure_masks, mean_surface_distance
from gate.model.sources import SPLITS, Volume, volumes_for_split
from gate.verify.strip import boundary_strip

GOOD = "good"
MIN_STRIP_PIXELS = 40
MAX_FRAMES_PER_STRUCTURE = 10
# Dice below this makes a segmentation bad (issue 3, the default good/bad boundary).
BAD_DICE = 0.8
# A second, boundary criterion reported beside it: average surface distance above this many pixels.
BAD_SURFACE_DISTANCE = 1.0


@dataclass(frozen=True)
class Case:
    source: str  # data source, e.g. "icbm152", "itk", "pydicom-synth", "threshold"
    volume: str  # volume/subject id: the unit of the train/val/test split (never split by slice)
    structure: str  # segment label, e.g. "brain", "white matter", "lesion"
    image: np.ndarray  # 2-D float32 frame, raw intensities (the scorer normalises like the gate)
    truth: np.ndarray  # bool ground-truth mask
    mask: np.ndarray  # bool mask under test
    mode: str  # "good" or a failure mode name (e.g. "dilate_0.15R", "shift_0.3R", "wrong_slice")
    dice: float  # true Dice(mask, truth)

    @property
    def bad(self) -> bool:
        return self.dice < BAD_DICE

    @property
    def surface_distance(self) -> float:
        """ASSD in pixels between the mask under test and the ground truth."""
        return mean_surface_distance(self.mask, self.truth)

    @property
    def family(self) -> str:
        """The failure mode without its severity ("dilate_0.15R" -> "dilate")."""
        return mode_family(self.mode)


def mode_family(mode: str) -> str:
    return re.sub(r"_\d+(\.\d+)?R$", "", mode)


def _usable(mask: np.ndarray) -> bool:
    return (
        bool(mask.any()) and not bool(mask.all()) and int(boundary_strip(mask, 2).sum()) >= MIN_STRIP_PIXELS
    )


def volume_cases(volume: Volume, seed: int = 0) -> list[Case]:
    """All cases of one volume, deterministic for ``seed``."""
    cases: list[Case] = []
    for s_index, (structure, stack) in enumerate(sorted(volume.labels.items())):
        frames = [z for z in range(stack.shape[0]) if _usable(stack[z])]
        if len(frames) > MAX_FRAMES_PER_STRUCTURE:
            frames = [
                frames[i]
                for i in np.linspace(0, len(frames) - 1, MAX_FRAMES_PER_STRUCTURE).round().astype(int)
            ]
        for z in frames:
            rng = np.random.default_rng([seed, s_index, z, len(volume.volume)])
            truth = stack[z]
            neighbours = [(k, m[z]) for k, m in volume.labels.items() if k != structure and _usable(m[z])]
            others = [
                (f"{structure}@{z + d}", stack[z + d])
                for d in (-3, 3)
                if 0 <= z + d < stack.shape[0] and _usable(stack[z + d])
            ]
            image = np.asarray(volume.image[z], dtype=np.float32)
            for mode, mask in [
                (GOOD, truth),
                *failure_masks(
                    truth, rng, volume.spacing, neighbours=neighbours[:1], other_slices=others[:1]
                ),
            ]:
                cases.append(
                    Case(volume.source, volume.volume, structure, image, truth, mask, mode, dice(mask, truth))
                )
    return cases


def load_cases(
    split: str, *, seed: int = 0, limit: int | None = None, sources: Sequence[str] | None = None
) -> list[Case]:
    """The cases of every volume in ``split`` ("train", "val" or "test"); deterministic for ``seed``.

    ``limit`` keeps an evenly spread subset (every k-th case), so a quick run still sees every volume.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cases = [c for v in volumes_for_split(split, sources, seed=seed) for c in volume_cases(v, seed)]
    if limit is not None and len(cases) > limit:
        keep = np.linspace(0, len(cases) - 1, limit).round().astype(int)
        cases = [cases[i] for i in keep]
    return cases
