"""evaluate_task / simulate contract: frame layout, determinism, window semantics, no look-ahead, input errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting import evaluate as evaluate_module
from qframe.research.backtesting.evaluate import evaluate_task, simulate
from qframe.research.backtesting.results import METRIC_COLUMNS
from qframe.research.backtesting.strategies import StrategyError, get_strategy
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SplitWindow

pytestmark = pytest.mark.unit

N = 600
Combo = dict[str, float | int]
COMBOS: dict[str, tuple[Combo, ...]] = {
    "ma_crossover": (
        {"fast": 3, "slow": 20, "allow_short": 1},
        {"fast": 10, "slow": 40, "allow_short": 0},
        {"fast": 7, "slow": 8, "allow_short": 1},
        {"fast": 1, "slow": 60, "allow_short": 1},
        {"fast": 15, "slow": 90, "allow_short": 0},
    ),
    "adaptive_mean_reversion": (
        {"lookback_short": 5, "lookback_long": 40, "z_entry_base": 1.0},
        {"lookback_short": 10, "lookback_long": 80, "z_entry_base": 0.5},
        {"lookback_short": 3, "lookback_long": 20, "z_entry_base": 2.0},
    ),
    "momentum_breakout": (
        {"lookback": 20, "exit_lookback": 10, "allow_short": 1},
        {"lookback": 50, "exit_lookback": 50, "allow_short": 0},
        {"lookback": 5, "exit_lookback": 2, "allow_short": 1},
    ),
}


def _market(seed: int = 3, n: int = N) -> MarketData:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))
    return MarketData(
        name="m",
        timestamps=(np.datetime64("2024-01-01", "ns") + np.arange(n) * np.timedelta64(1, "h")),
        open=close,
        high=close * (1 + rng.uniform(0, 0.01, n)),
        low=close * (1 - rng.uniform(0, 0.01, n)),
        close=close,
        volume=np.ones(n),
    )


def _task(strategy: str, combos: tuple[Combo, ...], **changes: object) -> BacktestTask:
    task = BacktestTask(task_id="t-1", strategy=strategy, dataset="m", params=combos)
    return dataclasses.replace(task, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_frame_layout_and_dtypes(strategy: str) -> None:
    combos = COMBOS[strategy]
    frame = evaluate_task(_task(strategy, combos), _market())
    params = [f"param_{key}" for key in combos[0]]
    assert list(frame.columns) == ["task_id", "strategy", "dataset", "split_id", "sample", *params, *METRIC_COLUMNS]
    assert len(frame) == len(combos)
    assert (frame["task_id"] == "t-1").all()
    assert (frame["strategy"] == strategy).all()
    assert (frame["dataset"] == "m").all()
    assert (frame["split_id"] == -1).all()
    assert (frame["sample"] == "full").all()
    assert (frame["n_bars"] == N).all()
    for column in ("split_id", "n_trades", "n_bars"):
        assert frame[column].dtype == np.int64, column
    for column in ("total_return", "sharpe", "max_drawdown", "exposure", "final_equity"):
        assert frame[column].dtype == np.float64, column
    for key, value in combos[0].items():
        assert frame[f"param_{key}"].dtype == (np.int64 if isinstance(value, int) else np.float64)
    assert (frame["max_drawdown"] <= 0).all()
    assert frame["exposure"].between(0, 1).all()
    assert np.allclose(frame["final_equity"], 100_000.0 * (1 + frame["total_return"]), rtol=1e-12)


def test_split_rows_are_in_sample_then_out_of_sample_for_every_combination() -> None:
    combos = COMBOS["ma_crossover"]
    split = SplitWindow(split_id=2, train_start=100, train_end=350, test_start=360, test_end=500)
    frame = evaluate_task(_task("ma_crossover", combos, split=split), _market())
    assert frame["sample"].tolist() == ["in_sample"] * 5 + ["out_of_sample"] * 5
    assert (frame["split_id"] == 2).all()
    assert frame["n_bars"].tolist() == [250] * 5 + [140] * 5
    assert frame["param_fast"].tolist() == [c["fast"] for c in combos] * 2


@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_pure_deterministic_and_independent_of_block_composition(strategy: str) -> None:
    data = _market()
    combos = COMBOS[strategy]
    split = SplitWindow(0, 50, 300, 310, 590)
    whole = evaluate_task(_task(strategy, combos, split=split), data)
    pd.testing.assert_frame_equal(whole, evaluate_task(_task(strategy, combos, split=split), data), check_exact=True)
    # The engine may cut the grid into blocks of any size: each combination's numbers must not change.
    for size in (1, 2):
        parts = [
            evaluate_task(_task(strategy, combos[i : i + size], split=split), data) for i in range(0, len(combos), size)
        ]
        pieces = pd.concat(parts, ignore_index=True)
        keyed = [f"param_{key}" for key in combos[0]] + ["sample"]
        pd.testing.assert_frame_equal(
            pieces.sort_values(keyed, kind="stable").reset_index(drop=True),
            whole.sort_values(keyed, kind="stable").reset_index(drop=True),
            check_exact=True,
        )


@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_fused_path_equals_the_generic_path_in_any_batch(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fused kernels are an optimisation only; big blocks on the generic path are signalled a few combinations at a
    time to bound memory. Neither may move a number. 5,000 bars: windows cross the kernels' chunk boundaries."""
    data = _market(seed=21, n=5_000)
    split = SplitWindow(3, 1_000, 2_100, 2_150, 4_999)
    task = _task(strategy, COMBOS[strategy], split=split, costs=CostModel(0.0004, 0.0002))
    fused = evaluate_task(task, data)
    monkeypatch.setattr(get_strategy(strategy), "fused", lambda *args, **kwargs: None)
    pd.testing.assert_frame_equal(evaluate_task(task, data), fused, check_exact=True)
    monkeypatch.setattr(evaluate_module, "TARGETS_BUDGET_BYTES", 8 * 5_000)  # one combination per batch
    pd.testing.assert_frame_equal(evaluate_task(task, data), fused, check_exact=True)
    assert (fused["n_trades"] > 0).all()


@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_simulate_metrics_equal_the_evaluate_row(strategy: str) -> None:
    data = _market()
    costs = CostModel(0.0002, 0.0003)
    split = SplitWindow(1, 0, 280, 300, 600)
    frame = evaluate_task(_task(strategy, COMBOS[strategy], split=split, costs=costs, bars_per_year=8760.0), data)
    for j, combo in enumerate(COMBOS[strategy]):
        for sample in ("in_sample", "out_of_sample"):
            row = frame[frame["sample"] == sample].iloc[j]
            result = simulate(strategy, data, combo, costs=costs, bars_per_year=8760.0, window=split.window(sample))
            for metric in METRIC_COLUMNS:
                expected, actual = row[metric], result.metrics[metric]
                assert (math.isnan(expected) and math.isnan(actual)) or actual == pytest.approx(expected, rel=1e-12)
            total = float(np.prod(1.0 + result.returns.to_numpy()) - 1.0)
            assert total == pytest.approx(result.metrics["total_return"], rel=1e-9, abs=1e-12)
            assert result.equity.iloc[-1] == pytest.approx(result.metrics["final_equity"], rel=1e-12)
            assert int((result.positions.diff().fillna(result.positions.iloc[0]) != 0).sum()) == row["n_trades"]


def test_a_window_starts_flat_and_pays_to_enter_the_warm_up_position() -> None:
    data = _market()
    combo = {"fast": 3, "slow": 20, "allow_short": 1}
    costs = CostModel(0.001, 0.001)
    full = simulate("ma_crossover", data, combo, costs=costs)
    start = 200
    held_before = float(full.positions.iloc[start])
    assert held_before != 0.0, "the test needs a position held through the window start"
    window = simulate("ma_crossover", data, combo, costs=costs, window=(start, 400))
    market = data.close[start] / data.close[start - 1] - 1.0
    assert window.positions.iloc[0] == held_before
    assert window.returns.iloc[0] == pytest.approx(held_before * market - costs.rate * abs(held_before), rel=1e-12)
    assert window.equity.iloc[0] == pytest.approx(100_000.0 * (1 + window.returns.iloc[0]), rel=1e-12)
    # Indicators use history before the window: positions inside it equal the whole-series run's.
    np.testing.assert_array_equal(window.positions.to_numpy(), full.positions.to_numpy()[start:400])
    assert window.metrics["n_trades"] >= 1


@pytest.mark.parametrize("strategy", sorted(COMBOS))
def test_no_look_ahead(strategy: str) -> None:
    """Rewriting every bar after t changes nothing about equity up to t, nor the metrics of a window ending at t."""
    data = _market(seed=9)
    cut = 410
    rng = np.random.default_rng(1)
    shock = np.exp(rng.normal(0.0, 0.2, N - cut - 1))
    changed = dataclasses.replace(
        data,
        close=np.concatenate([data.close[: cut + 1], data.close[cut + 1 :] * shock]),
        high=np.concatenate([data.high[: cut + 1], data.high[cut + 1 :] * shock * 1.05]),
        low=np.concatenate([data.low[: cut + 1], data.low[cut + 1 :] * shock * 0.95]),
    )
    for combo in COMBOS[strategy]:
        before = simulate(strategy, data, combo)
        after = simulate(strategy, changed, combo)
        np.testing.assert_array_equal(before.equity.to_numpy()[: cut + 1], after.equity.to_numpy()[: cut + 1])
        np.testing.assert_array_equal(before.positions.to_numpy()[: cut + 2], after.positions.to_numpy()[: cut + 2])
    split = SplitWindow(0, 0, 300, 300, cut + 1)
    pd.testing.assert_frame_equal(
        evaluate_task(_task(strategy, COMBOS[strategy], split=split), data),
        evaluate_task(_task(strategy, COMBOS[strategy], split=split), changed),
        check_exact=True,
    )


def test_a_never_trading_combination_has_zero_return_and_undefined_ratios() -> None:
    data = _market(n=60)
    frame = evaluate_task(_task("ma_crossover", ({"fast": 10, "slow": 80, "allow_short": 1},)), data)
    row = frame.iloc[0]
    assert row["total_return"] == 0.0
    assert row["final_equity"] == 100_000.0
    assert row["max_drawdown"] == 0.0
    assert row["n_trades"] == 0
    assert row["exposure"] == 0.0
    assert math.isnan(row["sharpe"])
    assert math.isnan(row["sortino"])


def test_costs_only_lower_returns() -> None:
    data = _market()
    combos = COMBOS["momentum_breakout"]
    free = evaluate_task(_task("momentum_breakout", combos, costs=CostModel(0.0, 0.0)), data)
    paid = evaluate_task(_task("momentum_breakout", combos, costs=CostModel(0.001, 0.002)), data)
    traded = free["n_trades"] > 0
    assert traded.all()
    assert (paid["final_equity"] < free["final_equity"]).all()
    assert paid["n_trades"].tolist() == free["n_trades"].tolist()


def test_bad_inputs_are_refused_with_what_to_fix() -> None:
    data = _market()
    ok = COMBOS["ma_crossover"][:1]
    with pytest.raises(ValueError, match="for dataset 'other' but was given market data 'm'"):
        evaluate_task(_task("ma_crossover", ok, dataset="other"), data)
    with pytest.raises(ValueError, match=r"window \[300, 700\) is not inside the series' 600 bars"):
        evaluate_task(_task("ma_crossover", ok, split=SplitWindow(0, 0, 300, 300, 700)), data)
    with pytest.raises(ValueError, match=r"bars_per_year must be positive \(252 for daily bars\)"):
        evaluate_task(_task("ma_crossover", ok, bars_per_year=0.0), data)
    with pytest.raises(ValueError, match="initial_capital must be a positive amount"):
        evaluate_task(_task("ma_crossover", ok, initial_capital=-5.0), data)
    with pytest.raises(StrategyError, match="unknown strategy"):
        evaluate_task(_task("nope", ok), data)
    with pytest.raises(StrategyError, match="no parameter combinations"):
        evaluate_task(_task("ma_crossover", ()), data)
    with pytest.raises(ValueError, match="window"):
        simulate("ma_crossover", data, ok[0], window=(10, 10))
    with pytest.raises(ValueError, match="initial_capital must be a positive amount"):
        simulate("ma_crossover", data, ok[0], initial_capital=0.0)
    with pytest.raises(TypeError, match="registry name or a Strategy instance"):
        simulate(42, data, ok[0])  # type: ignore[arg-type]
