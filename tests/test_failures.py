"""Failure modes of gate.model.failures: each one's Dice against the truth is right, and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from gate.model import failures as f


def disc(
    shape: tuple[int, int] = (80, 80), center: tuple[int, int] = (40, 40), r: float = 15.0
) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= r * r


def test_dice_by_hand() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True  # 2 pixels
    b[0, 1:4] = True  # 3 pixels, 1 shared
    assert f.dice(a, b) == pytest.approx(2 * 1 / 5)
    assert f.dice(a, a) == 1.0
    assert f.dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_shift_has_no_wraparound_and_right_dice() -> None:
    m = np.zeros((10, 10), bool)
    m[2:6, 2:6] = True  # 16 pixels
    s = f.shift(m, 0, 2)
    assert s.sum() == 16 and s[2:6, 4:8].all()
    assert f.dice(m, s) == pytest.approx(2 * 8 / 32)
    edge = f.shift(m, 0, 6)  # two columns leave the frame
    assert edge.sum() == 8 and not edge[:, :2].any()


def test_dilate_and_erode_mm_follow_spacing() -> None:
    m = disc(r=15)
    d1 = f.dilate_mm(m, 3.0, (1.0, 1.0))
    d2 = f.dilate_mm(m, 3.0, (0.5, 0.5))  # 3 mm = 6 pixels at 0.5 mm
    assert m.sum() < d1.sum() < d2.sum()
    area = np.pi * np.array([15**2, 18**2, 21**2])
    assert d1.sum() == pytest.approx(area[1], rel=0.05)
    assert d2.sum() == pytest.approx(area[2], rel=0.05)
    e = f.erode_mm(m, 3.0)
    assert not (e & ~m).any()
    assert e.sum() == pytest.approx(np.pi * 12**2, rel=0.06)
    assert f.dice(m, e) == pytest.approx(2 * e.sum() / (m.sum() + e.sum()))


def test_missing_part_and_spurious_blob() -> None:
    m = disc()
    rng = np.random.default_rng(1)
    cut = f.missing_part(m, 0.3, rng)
    assert not (cut & ~m).any()
    assert 1 - cut.sum() / m.sum() == pytest.approx(0.3, abs=0.03)
    plus = f.spurious_blob(m, 0.5, np.random.default_rng(2))
    assert (plus & m).sum() == m.sum() and plus.sum() > m.sum()
    assert f.dice(plus, m) == pytest.approx(2 * m.sum() / (plus.sum() + m.sum()))


def test_failure_masks_are_deterministic_and_span_the_boundary() -> None:
    m = disc(shape=(120, 120), center=(60, 60), r=25)
    a = f.failure_masks(m, np.random.default_rng(0), (1.0, 1.0))
    b = f.failure_masks(m, np.random.default_rng(0), (1.0, 1.0))
    assert [n for n, _ in a] == [n for n, _ in b]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    dices = [f.dice(x, m) for _, x in a]
    assert min(dices) < 0.8 < max(dices)  # both sides of the good/bad boundary
    assert all(x.any() and not x.all() for _, x in a)


def test_neighbour_and_wrong_slice_come_from_the_caller() -> None:
    m = disc()
    other = disc(center=(40, 55), r=10)
    out = dict(
        f.failure_masks(m, np.random.default_rng(0), neighbours=[("x", other)], other_slices=[("y", m)])
    )
    assert np.array_equal(out["neighbour_label"], other)
    assert np.array_equal(out["wrong_slice"], m)


def test_mean_surface_distance_by_hand() -> None:
    """Two 11 x 11 squares, one moved 3 px sideways. Of each 40-pixel outline: the 11 pixels of the far
    side are 3 px from the other outline (33); the 11 of the near side lie on the other square's top and
    bottom rows at the corners (0) and min(3, distance to those rows) between them (1+2+3+3+3+3+3+2+1 = 21);
    the top and bottom rows lie on the other outline but for 2 end pixels each (1 + 2, twice: 6)."""
    a = np.zeros((30, 30), bool)
    a[5:16, 5:16] = True
    b = np.roll(a, 3, axis=1)
    assert f.mean_surface_distance(a, a) == 0.0
    d = f.mean_surface_distance(a, b)
    assert d == pytest.approx(f.mean_surface_distance(b, a))
    assert d == pytest.approx((33 + 21 + 6) / 40)
    assert f.mean_surface_distance(a, np.zeros_like(a)) == float("inf")
    # Dice hides size: the same 1-px boundary error costs a small disc far more Dice than a large one.
    small, large = disc(r=5.0), disc(r=30.0)
    grown_small, grown_large = f.dilate_mm(small, 1.0), f.dilate_mm(large, 1.0)
    assert f.mean_surface_distance(small, grown_small) == pytest.approx(
        f.mean_surface_distance(large, grown_large), abs=0.3
    )
    assert f.dice(small, grown_small) < 0.85 < 0.95 < f.dice(large, grown_large)
