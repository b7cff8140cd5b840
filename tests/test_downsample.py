"""service.metrics.downsample: evenly spaced points, first and last always kept."""

from __future__ import annotations

import itertools

import pytest

from service.metrics import downsample


def series(n: int, start: int = 0, stride: int = 1) -> list[tuple[int, float]]:
    return [(start + i * stride, float(i) * 0.5 - 3.0) for i in range(n)]


def assert_valid_subsequence(out: list[tuple[int, float]], src: list[tuple[int, float]]) -> None:
    steps = [s for s, _ in out]
    assert all(a < b for a, b in itertools.pairwise(steps)), "steps not increasing"
    assert set(out) <= set(src), "downsample invented points"


@pytest.mark.parametrize("n", [3, 10, 11, 99, 100, 101, 1000, 1001, 12345])
@pytest.mark.parametrize("max_points", [2, 3, 7, 10, 100, 500])
def test_keeps_ends_bounded_and_increasing(n: int, max_points: int) -> None:
    src = series(n, start=5, stride=3)
    out = downsample(src, max_points)
    assert len(out) <= max_points
    assert out[0] == src[0]
    assert out[-1] == src[-1]
    assert_valid_subsequence(out, src)
    if n > max_points:
        # evenly spaced picks of distinct indices: no duplicates collapse the budget away
        assert len(out) == max_points


@pytest.mark.parametrize("n", [0, 1, 2, 5, 10])
def test_short_series_is_unchanged(n: int) -> None:
    src = series(n)
    assert downsample(src, 10) == src
    assert downsample(src, n or 1) == src


def test_max_points_one_keeps_a_single_point_the_last() -> None:
    src = series(50)
    out = downsample(src, 1)
    assert out == [src[-1]]


def test_max_points_two_is_first_and_last() -> None:
    src = series(50)
    assert downsample(src, 2) == [src[0], src[-1]]


def test_points_are_roughly_evenly_spaced() -> None:
    src = series(1001)
    out = downsample(src, 11)
    assert [s for s, _ in out] == list(range(0, 1001, 100))


def test_input_is_not_modified() -> None:
    src = series(100)
    copy = list(src)
    downsample(src, 7)
    assert src == copy
