"""Strategy registry, declared parameters and user-defined strategies through the generic path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.evaluate import evaluate_task, simulate
from qframe.research.backtesting.grid import expand_grid
from qframe.research.backtesting.strategies import (
    ParamBlock,
    ParamSpec,
    Strategy,
    StrategyError,
    available_strategies,
    get_strategy,
)
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SplitWindow

from tests.harness.bt_reference import run_reference

pytestmark = pytest.mark.unit

BUILT_INS = ("adaptive_mean_reversion", "ma_crossover", "momentum_breakout")


class _TestBtMomentumSign(Strategy):
    """Long after a positive ``lookback``-bar return, short (scaled by ``size``) after a negative one."""

    name = "test_bt_momentum_sign"
    parameters: ClassVar[dict[str, ParamSpec]] = {
        "lookback": ParamSpec(int, 5, minimum=1, help="bars of past return"),
        "size": ParamSpec(float, 1.0, minimum=0.0, maximum=1.0, help="position size"),
    }

    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        out = np.zeros((len(data), params["lookback"].size))
        for j, (lookback, size) in enumerate(zip(params["lookback"], params["size"], strict=True)):
            past = data.close[lookback:] / data.close[:-lookback] - 1.0
            out[lookback:, j] = np.sign(past) * size
        return out


class _TestBtBroken(Strategy):
    """Returns whatever shape/values the ``mode`` parameter asks for, to test the evaluator's checks."""

    name = "test_bt_broken"
    parameters: ClassVar[dict[str, ParamSpec]] = {
        "mode": ParamSpec(int, 0, minimum=0, maximum=2),
    }

    def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
        mode = int(params["mode"][0])
        if mode == 0:
            return np.zeros((len(data) - 1, params["mode"].size))
        if mode == 1:
            return np.full((len(data), params["mode"].size), 2.0)
        return np.full((len(data), params["mode"].size), np.nan)


def _market(n: int = 300, seed: int = 0) -> MarketData:
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    return MarketData(
        name="s",
        timestamps=np.arange(n).astype("datetime64[D]").astype("datetime64[ns]"),
        open=close,
        high=close * 1.01,
        low=close * 0.99,
        close=close,
        volume=np.ones(n),
    )


def test_built_ins_are_registered_with_declared_parameters() -> None:
    assert set(BUILT_INS) <= set(available_strategies())
    assert available_strategies() == sorted(available_strategies())
    assert list(get_strategy("ma_crossover").parameters) == ["fast", "slow", "allow_short"]
    assert list(get_strategy("adaptive_mean_reversion").parameters) == [
        "lookback_short",
        "lookback_long",
        "z_entry_base",
    ]
    assert list(get_strategy("momentum_breakout").parameters) == ["lookback", "exit_lookback", "allow_short"]
    for name in BUILT_INS:
        cls = get_strategy(name)
        assert cls.name == name
        defaults = {key: spec.default for key, spec in cls.parameters.items()}
        assert cls.valid(defaults), f"{name}: its defaults must form a valid combination"
        for spec in cls.parameters.values():
            assert spec.kind in (int, float)
            assert isinstance(spec.default, spec.kind)


def test_unknown_strategy_error_lists_the_available_names() -> None:
    with pytest.raises(StrategyError, match="unknown strategy 'nope'") as caught:
        get_strategy("nope")
    for name in BUILT_INS:
        assert name in str(caught.value)


def test_a_name_taken_by_another_class_is_refused() -> None:
    with pytest.raises(StrategyError, match="'ma_crossover' is taken"):

        class Impostor(Strategy):
            name = "ma_crossover"

            def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
                return np.zeros((len(data), 1))

    assert get_strategy("ma_crossover").__name__ == "MovingAverageCrossover"


def test_bad_strategy_names_are_refused() -> None:
    with pytest.raises(StrategyError, match="lower-case identifier"):

        class Shouting(Strategy):
            name = "Not A Name"

            def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
                return np.zeros((len(data), 1))


def test_a_strategy_without_parameters_is_refused() -> None:
    with pytest.raises(StrategyError, match="declares no parameters"):

        class Constant(Strategy):
            name = "test_bt_constant"

            def signals(self, data: MarketData, params: ParamBlock) -> np.ndarray:
                return np.ones((len(data), 1))

    assert "test_bt_constant" not in available_strategies()


@pytest.mark.parametrize(
    ("combo", "message"),
    [
        ({"fast": 10, "slow": 5}, "invalid combination"),
        ({"fast": 10, "slow": 10}, "invalid combination"),
        ({"fast": 0, "slow": 10}, "fast must be >= 1"),
        ({"fast": 2.5, "slow": 10}, "whole numbers"),
        ({"fast": 2, "slow": 10, "allow_short": 3}, "allow_short must be <= 1"),
        ({"fast": 2, "slw": 10}, r"unknown parameter\(s\) \['slw'\]"),
        ({"fast": "2", "slow": 10}, "not a number"),
        ({"fast": True, "slow": 10}, "not a number"),
    ],
)
def test_parameter_combinations_are_checked(combo: Mapping[str, object], message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        get_strategy("ma_crossover").param_block([combo])


def test_param_block_fills_defaults_and_types_columns() -> None:
    block = get_strategy("adaptive_mean_reversion").param_block([{"lookback_long": 50}, {"z_entry_base": 2}])
    assert block["lookback_short"].dtype == np.int64
    assert block["z_entry_base"].dtype == np.float64
    assert block["lookback_long"].tolist() == [50, 100]
    assert block["z_entry_base"].tolist() == [1.5, 2.0]


def test_grid_drops_invalid_combinations_using_valid() -> None:
    combos = expand_grid("ma_crossover", {"fast": [5, 10, 20], "slow": [10, 20]})
    assert [(c["fast"], c["slow"]) for c in combos] == [(5, 10), (5, 20), (10, 20)]
    combos = expand_grid("momentum_breakout", {"lookback": [5, 10], "exit_lookback": [5, 10]})
    assert all(c["exit_lookback"] <= c["lookback"] for c in combos)
    assert len(combos) == 3


def test_a_user_strategy_runs_through_the_generic_path_and_matches_the_reference() -> None:
    data = _market()
    combos = ({"lookback": 3, "size": 1.0}, {"lookback": 12, "size": 0.25})
    costs = CostModel(0.001, 0.0)
    split = SplitWindow(0, 10, 150, 160, 300)
    task = BacktestTask("u", "test_bt_momentum_sign", "s", combos, costs=costs, initial_capital=1_000.0, split=split)
    frame = evaluate_task(task, data)
    assert frame["sample"].tolist() == ["in_sample", "in_sample", "out_of_sample", "out_of_sample"]
    assert frame["param_size"].dtype == np.float64
    close = data.close.tolist()
    for i, row in frame.iterrows():
        combo = combos[int(i) % 2]
        lookback, size = int(combo["lookback"]), float(combo["size"])
        targets = [0.0] * len(close)
        for t in range(lookback, len(close)):
            past = close[t] / close[t - lookback] - 1.0
            targets[t] = size if past > 0 else -size if past < 0 else 0.0
        start, end = split.window(str(row["sample"]))
        expected = run_reference(
            targets, close, start=start, end=end, cost_rate=costs.rate, initial_capital=1_000.0, bars_per_year=252.0
        ).metrics
        for metric in ("total_return", "sharpe", "max_drawdown", "n_trades", "exposure", "final_equity"):
            assert row[metric] == pytest.approx(expected[metric], rel=1e-9, abs=1e-12), metric


@pytest.mark.parametrize(
    ("mode", "message"),
    [(0, r"returned shape \(299, 1\); expected"), (1, r"in \[-1, 1\]"), (2, "finite")],
)
def test_malformed_user_signals_are_refused(mode: int, message: str) -> None:
    task = BacktestTask("b", "test_bt_broken", "s", ({"mode": mode},))
    with pytest.raises(StrategyError, match=message):
        evaluate_task(task, _market())


def test_simulate_takes_an_unregistered_strategy_instance() -> None:
    class Unnamed(_TestBtMomentumSign):
        """A subclass without its own ``name``: not registered, still usable directly."""

    data = _market()
    result = simulate(Unnamed(), data, {"lookback": 4, "size": 0.5})
    registered = simulate("test_bt_momentum_sign", data, {"lookback": 4, "size": 0.5})
    pd.testing.assert_series_equal(result.equity, registered.equity, check_exact=True)
    assert set(result.positions.unique()) <= {-0.5, 0.0, 0.5}
    assert result.params == {"lookback": 4, "size": 0.5}
