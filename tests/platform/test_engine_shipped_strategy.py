"""A Strategy subclass defined in exec'd code (a notebook cell, a script's __main__) runs on every backend.

Workers never saw the cell: the class travels with the tasks, pickled by value. Real local Dask and Ray
clusters (2 single-threaded worker processes on 127.0.0.1), frames compared bit for bit with sequential.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pytest
from qframe.research.backtesting import strategies as strategies_module
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.backtesting.strategies import strategy_fingerprint, strategy_payload
from qframe.research.backtesting.sweep_plan import as_market_data
from qframe.research.backtesting.types import MarketData

from tests.harness.engine_workload import workload_bars

CELL = """
import numpy as np
from qframe.research.backtesting.strategies import ParamSpec, Strategy

class CellMomentum(Strategy):
    name = "cell_momentum_{suffix}"
    parameters = {{"lookback": ParamSpec(int, 20, minimum=1, help="bars of past return")}}

    def signals(self, data, params):
        lookback = params["lookback"]
        past = np.zeros((len(data), lookback.size))
        for j, k in enumerate(lookback):
            past[k:, j] = data.close[k:] / data.close[:-k] - 1
        return np.sign(past) * {scale}
"""
GRID = {"lookback": [3, 8, 21, 55]}


def _define_in_cell(suffix: str, scale: float = 1.0) -> str:
    """Run the cell as exec'd code in a namespace no worker can import; return the strategy name."""
    namespace: dict[str, Any] = {"__name__": f"notebook_cell_{suffix}"}
    exec(compile(CELL.format(suffix=suffix, scale=scale), f"<cell {suffix}>", "exec"), namespace)  # noqa: S102
    assert namespace["__name__"] not in sys.modules
    return f"cell_momentum_{suffix}"


@pytest.fixture
def cell_strategy() -> Any:
    name = _define_in_cell("a")
    yield name
    strategies_module._REGISTRY.pop(name, None)


@pytest.fixture(scope="module")
def market() -> dict[str, MarketData]:
    return as_market_data(workload_bars(periods=800))


def _run(backend: str, name: str, market: dict[str, MarketData], **options: Any) -> pd.DataFrame:
    with DistributedBacktestEngine(backend, max_workers=2, block_size=2, progress=False) as engine:
        assert engine.backend == backend, engine.fallback_reasons
        return engine.run_backtest_sync([name], market, {name: GRID}, bars_per_year=8760.0, **options).frame


@pytest.mark.services
@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_strategy_from_exec_d_code_runs_on_the_cluster_with_the_sequential_numbers(
    backend: str, cell_strategy: str, market: dict[str, MarketData]
) -> None:
    reference = _run("sequential", cell_strategy, market, n_splits=2)
    frame = _run(backend, cell_strategy, market, n_splits=2)
    assert len(frame) == len(market) * len(GRID["lookback"]) * 2 * 2
    assert frame["sharpe"].notna().all()
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)


@pytest.mark.unit
def test_only_strategies_workers_cannot_import_travel_by_value(cell_strategy: str) -> None:
    assert strategy_payload("ma_crossover") is None
    assert strategy_fingerprint("ma_crossover") is None
    payload = strategy_payload(cell_strategy)
    assert payload is not None
    shipped = strategies_module.strategy_from_payload(payload)
    assert shipped.name == cell_strategy


@pytest.mark.unit
def test_editing_the_cell_changes_the_task_ids_so_old_checkpoints_are_not_resumed(
    market: dict[str, MarketData],
) -> None:
    try:
        name = _define_in_cell("b", scale=1.0)
        same = strategy_fingerprint(name)
        _define_in_cell("b", scale=1.0)  # re-running the unchanged cell
        assert strategy_fingerprint(name) == same
        _define_in_cell("b", scale=0.5)  # the researcher edits the cell
        assert strategy_fingerprint(name) != same
    finally:
        strategies_module._REGISTRY.pop("cell_momentum_b", None)
