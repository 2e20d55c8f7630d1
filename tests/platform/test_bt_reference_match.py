"""The numba kernels (fused and generic paths) against the plain bar-by-bar reference, to 1e-9.

Every built-in strategy, many random parameter sets, random price paths, with and without costs, long/short
and long-only, on the whole series and on walk-forward windows (warm-up history before the window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.evaluate import evaluate_task, simulate
from qframe.research.backtesting.results import METRIC_COLUMNS
from qframe.research.backtesting.strategies import get_strategy
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SplitWindow

from tests.harness.bt_reference import REFERENCE_TARGETS, Bars, run_reference

pytestmark = pytest.mark.unit

TOLERANCE = 1e-9
N_BARS = 420
BARS_PER_YEAR = 252.0 * 7


def _market(seed: int) -> MarketData:
    """A random walk with regime changes in drift and volatility, plus a consistent high/low range."""
    rng = np.random.default_rng(seed)
    regime = np.repeat(rng.normal(0.0, 0.002, N_BARS // 60 + 1), 60)[:N_BARS]
    vol = np.repeat(rng.uniform(0.003, 0.03, N_BARS // 45 + 1), 45)[:N_BARS]
    close = 50.0 * np.exp(np.cumsum(regime + vol * rng.standard_normal(N_BARS)))
    spread = close * rng.uniform(0.0, 0.02, N_BARS)
    return MarketData(
        name=f"walk{seed}",
        timestamps=np.arange(N_BARS).astype("datetime64[h]").astype("datetime64[ns]"),
        open=close.copy(),
        high=close + spread,
        low=close - spread,
        close=close,
        volume=np.ones(N_BARS),
    )


def _random_combos(strategy: str, rng: np.random.Generator, count: int) -> list[dict[str, float | int]]:
    combos: list[dict[str, float | int]] = []
    while len(combos) < count:
        if strategy == "ma_crossover":
            fast = int(rng.integers(1, 40))
            combo: dict[str, float | int] = {
                "fast": fast,
                "slow": int(rng.integers(fast + 1, 120)),
                "allow_short": int(rng.integers(0, 2)),
            }
        elif strategy == "adaptive_mean_reversion":
            short = int(rng.integers(2, 30))
            combo = {
                "lookback_short": short,
                "lookback_long": int(rng.integers(short + 1, 90)),
                "z_entry_base": float(np.round(rng.uniform(0.0, 2.5), 3)),
            }
        else:
            lookback = int(rng.integers(1, 60))
            combo = {
                "lookback": lookback,
                "exit_lookback": int(rng.integers(1, lookback + 1)),
                "allow_short": int(rng.integers(0, 2)),
            }
        if get_strategy(strategy).valid(combo):
            combos.append(combo)
    return combos


def _close(actual: float, expected: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _assert_row_matches(row: Mapping[str, object], expected: Mapping[str, float], context: str) -> None:
    for metric in METRIC_COLUMNS:
        actual = float(row[metric])  # type: ignore[arg-type]
        assert _close(actual, expected[metric]), f"{context}: {metric} = {actual!r}, reference {expected[metric]!r}"


@pytest.mark.parametrize("strategy", sorted(REFERENCE_TARGETS))
@pytest.mark.parametrize("costs", [CostModel(0.0, 0.0), CostModel(0.0007, 0.0011)], ids=["no_costs", "costs"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_evaluate_task_matches_the_reference(strategy: str, costs: CostModel, seed: int) -> None:
    data = _market(seed)
    bars = Bars(high=data.high.tolist(), low=data.low.tolist(), close=data.close.tolist())
    combos = _random_combos(strategy, np.random.default_rng(seed * 97 + len(strategy)), 12)
    split = SplitWindow(split_id=4, train_start=30, train_end=250, test_start=260, test_end=400)
    for task_split in (None, split):
        task = BacktestTask(
            task_id="ref",
            strategy=strategy,
            dataset=data.name,
            params=tuple(combos),
            costs=costs,
            initial_capital=10_000.0,
            bars_per_year=BARS_PER_YEAR,
            split=task_split,
        )
        frame = evaluate_task(task, data)
        windows = (
            [("full", (0, N_BARS))]
            if task_split is None
            else [
                ("in_sample", (30, 250)),
                ("out_of_sample", (260, 400)),
            ]
        )
        assert len(frame) == len(combos) * len(windows)
        for w, (sample, (start, end)) in enumerate(windows):
            for j, combo in enumerate(combos):
                row = frame.iloc[w * len(combos) + j]
                assert row["sample"] == sample
                assert {key: row[f"param_{key}"] for key in combo} == combo
                targets = REFERENCE_TARGETS[strategy](bars, combo)
                expected = run_reference(
                    targets,
                    bars.close,
                    start=start,
                    end=end,
                    cost_rate=costs.rate,
                    initial_capital=10_000.0,
                    bars_per_year=BARS_PER_YEAR,
                )
                _assert_row_matches(row, expected.metrics, f"{strategy} {combo} {sample}")


@pytest.mark.parametrize("strategy", sorted(REFERENCE_TARGETS))
def test_simulate_paths_match_the_reference(strategy: str) -> None:
    data = _market(11)
    bars = Bars(high=data.high.tolist(), low=data.low.tolist(), close=data.close.tolist())
    costs = CostModel(0.001, 0.0005)
    for combo in _random_combos(strategy, np.random.default_rng(5), 4):
        for window in (None, (150, 380)):
            start, end = window or (0, N_BARS)
            result = simulate(
                strategy, data, combo, costs=costs, initial_capital=1_000.0, bars_per_year=252.0, window=window
            )
            expected = run_reference(
                REFERENCE_TARGETS[strategy](bars, combo),
                bars.close,
                start=start,
                end=end,
                cost_rate=costs.rate,
                initial_capital=1_000.0,
                bars_per_year=252.0,
            )
            np.testing.assert_allclose(result.equity.to_numpy(), expected.equity, rtol=TOLERANCE, atol=0)
            np.testing.assert_allclose(result.returns.to_numpy(), expected.returns, rtol=0, atol=TOLERANCE)
            np.testing.assert_array_equal(result.positions.to_numpy(), expected.positions)
            assert result.equity.index.equals(pd.DatetimeIndex(data.timestamps[start:end], tz="UTC"))
            _assert_row_matches(result.metrics, expected.metrics, f"simulate {strategy} {combo} {window}")


def test_fused_ma_crossover_equals_its_generic_path() -> None:
    """The fused kernel is an optimisation only: signals + the generic simulation give the same numbers."""
    from qframe.research.backtesting import kernels  # noqa: PLC0415

    data = _market(8)
    combos = _random_combos("ma_crossover", np.random.default_rng(8), 40)
    strategy = get_strategy("ma_crossover")()
    block = type(strategy).param_block(combos)
    returns = kernels.bar_returns(data.close)
    targets = strategy.signals(data, block)
    for start, end in ((0, N_BARS), (77, 301)):
        fused = strategy.fused(data, block, [(start, end)], rate=0.0013, initial_capital=5.0)
        assert fused is not None
        generic = kernels.simulate_targets(targets, returns, start, end, 0.0013, 5.0)
        np.testing.assert_allclose(fused[0], generic, rtol=1e-12, atol=1e-15)
