"""Walk-forward splits: ordered, purged, non-overlapping test windows inside the series; clear errors."""

from __future__ import annotations

import itertools

import pytest
from qframe.research.backtesting.grid import GridError, iter_blocks, parse_grid_value
from qframe.research.backtesting.walk_forward import WalkForwardError, walk_forward_splits

pytestmark = pytest.mark.unit


def test_rolling_splits_with_explicit_sizes_and_purge() -> None:
    splits = walk_forward_splits(100, 3, train_size=40, test_size=15, purge=5)
    assert [(s.train_start, s.train_end, s.test_start, s.test_end) for s in splits] == [
        (0, 40, 45, 60),
        (15, 55, 60, 75),
        (30, 70, 75, 90),
    ]
    assert [s.split_id for s in splits] == [0, 1, 2]


def test_anchored_train_windows_start_at_zero_and_grow() -> None:
    splits = walk_forward_splits(100, 3, train_size=40, test_size=15, purge=5, anchored=True)
    assert [(s.train_start, s.train_end) for s in splits] == [(0, 40), (0, 55), (0, 70)]


@pytest.mark.parametrize("n_bars", [50, 101, 997, 10_000])
@pytest.mark.parametrize("n_splits", [1, 2, 5])
@pytest.mark.parametrize("purge", [0, 3])
def test_derived_sizes_fill_the_series_without_overlap(n_bars: int, n_splits: int, purge: int) -> None:
    splits = walk_forward_splits(n_bars, n_splits, purge=purge)
    assert len(splits) == n_splits
    for split in splits:
        assert split.test_start - split.train_end == purge
        assert split.train_end - split.train_start >= 2 * (split.test_end - split.test_start)
    for before, after in itertools.pairwise(splits):
        assert after.test_start == before.test_end
    assert splits[-1].test_end <= n_bars
    assert n_bars - splits[-1].test_end < n_splits + 2  # only the rounding remainder is left unused


def test_too_short_a_series_is_explained() -> None:
    with pytest.raises(WalkForwardError, match=r"need .* = 120 bars but the series has 100"):
        walk_forward_splits(100, 4, train_size=40, test_size=20)
    with pytest.raises(WalkForwardError, match="at least 2 bars"):
        walk_forward_splits(5, 4)
    with pytest.raises(WalkForwardError, match="n_splits"):
        walk_forward_splits(100, 0)


def test_grid_values_parse_lists_and_inclusive_ranges() -> None:
    assert parse_grid_value("5,10,20") == [5, 10, 20]
    assert parse_grid_value("10:50:10") == [10, 20, 30, 40, 50]
    assert parse_grid_value("1.0:2.0:0.5") == [1.0, 1.5, 2.0]
    assert parse_grid_value("0.5, 1") == [0.5, 1]
    with pytest.raises(GridError, match="not a number"):
        parse_grid_value("5,ten")
    with pytest.raises(GridError, match="start:stop:step"):
        parse_grid_value("1:2")


def test_blocks_keep_order_and_size() -> None:
    combos: list[dict[str, float | int]] = [{"a": i} for i in range(10)]
    blocks = list(iter_blocks(combos, 4))
    assert [len(b) for b in blocks] == [4, 4, 2]
    assert [c for b in blocks for c in b] == combos
    with pytest.raises(GridError):
        list(iter_blocks(combos, 0))
