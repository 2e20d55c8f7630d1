"""The engine on the sequential backend: sweep shape, walk-forward selection, summary, resume, metrics, errors."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import structlog
from prometheus_client import CollectorRegistry
from qframe.research.backtesting.checkpoints import SweepCheckpoints
from qframe.research.backtesting.engine import DistributedBacktestEngine, run_backtest_sync
from qframe.research.backtesting.evaluate import evaluate_task
from qframe.research.backtesting.observability import SweepProgress
from qframe.research.backtesting.results import BacktestResults, get_performance_summary
from qframe.research.backtesting.sweep_plan import as_market_data
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData
from qframe.research.data_lake.storage import MemoryStorage
from rich.console import Console

from tests.harness.engine_workload import GRIDS, STRATEGIES, n_combinations, workload_bars

pytestmark = pytest.mark.unit

BLOCK = 3


@pytest.fixture(scope="module")
def market() -> dict[str, MarketData]:
    return as_market_data(workload_bars(periods=1_500))


def _engine(**kwargs: object) -> DistributedBacktestEngine:
    options: dict[str, object] = {"block_size": BLOCK, "progress": False, **kwargs}
    return DistributedBacktestEngine("sequential", **options)  # type: ignore[arg-type]


def _param_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(column for column in frame.columns if column.startswith("param_"))


def _expected_tasks(n_datasets: int, splits: int = 1) -> int:
    return sum(math.ceil(count / BLOCK) for count in n_combinations().values()) * n_datasets * splits


def test_bars_frame_becomes_one_dataset_per_symbol(market: dict[str, MarketData]) -> None:
    assert sorted(market) == ["AAA", "BBB"]
    assert all(len(data.close) == 1_500 for data in market.values())


def test_grid_sweep_has_one_row_per_strategy_dataset_combination(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        results = engine.run_backtest_sync(STRATEGIES, market, GRIDS)
    frame = results.frame
    assert results.backend == "sequential"
    assert not results.walk_forward
    assert results.n_tasks == _expected_tasks(len(market))
    assert (results.n_computed, results.n_resumed) == (results.n_tasks, 0)
    counts = frame.groupby(["strategy", "dataset"]).size().to_dict()
    assert counts == {(s, d): n for s, n in n_combinations().items() for d in market}
    assert not frame.duplicated(["strategy", "dataset", *_param_columns(frame)]).any()
    assert set(frame["sample"]) == {"full"}
    assert frame["selected"].all()
    assert frame["task_id"].nunique() == results.n_tasks


def test_block_size_changes_scheduling_not_results(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        small = engine.run_backtest_sync(STRATEGIES, market, GRIDS, block_size=1)
        large = engine.run_backtest_sync(STRATEGIES, market, GRIDS, block_size=1_000)
    assert small.n_tasks == sum(n_combinations().values()) * len(market)
    assert large.n_tasks == len(STRATEGIES) * len(market)
    pd.testing.assert_frame_equal(
        small.frame.drop(columns="task_id"), large.frame.drop(columns="task_id"), check_exact=True
    )


def test_rows_equal_a_direct_evaluate_task_call(market: dict[str, MarketData]) -> None:
    grid = {"ma_crossover": GRIDS["ma_crossover"]}
    with _engine() as engine:
        results = engine.run_backtest_sync(["ma_crossover"], {"AAA": market["AAA"]}, grid)
    first_task = results.frame["task_id"].iloc[0]
    rows = results.frame[results.frame["task_id"] == first_task]
    names = _param_columns(rows)
    params = tuple(
        {name[len("param_") :]: value for name, value in record.items()} for record in rows[names].to_dict("records")
    )
    assert len(params) == BLOCK
    task = BacktestTask(
        task_id=first_task,
        strategy="ma_crossover",
        dataset="AAA",
        params=params,
        split=None,
        costs=CostModel(),
        initial_capital=100_000.0,
        # Hourly bars around the clock: the engine inferred 8,760 bars a year.
        bars_per_year=results.frequencies["AAA"].bars_per_year,
    )
    assert task.bars_per_year == 8760.0
    direct = evaluate_task(task, market["AAA"])
    pd.testing.assert_frame_equal(rows.reset_index(drop=True)[list(direct.columns)], direct, check_exact=True)


def test_walk_forward_selects_the_in_sample_best_and_scores_it_out_of_sample(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        results = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=3, purge=10)
    frame = results.frame
    assert results.walk_forward
    assert results.n_tasks == _expected_tasks(len(market), splits=3)
    assert set(frame["sample"]) == {"in_sample", "out_of_sample"}
    params = _param_columns(frame)
    for (strategy, dataset, split), group in frame.groupby(["strategy", "dataset", "split_id"]):
        ins = group[group["sample"] == "in_sample"]
        oos = group[group["sample"] == "out_of_sample"]
        assert len(ins) == len(oos) == n_combinations()[str(strategy)], (strategy, dataset, split)
        chosen_in = ins[ins["selected"]]
        chosen_out = oos[oos["selected"]]
        assert len(chosen_in) == len(chosen_out) == 1
        assert chosen_in["sharpe"].iloc[0] == ins["sharpe"].max()
        pd.testing.assert_frame_equal(
            chosen_in[params].reset_index(drop=True), chosen_out[params].reset_index(drop=True)
        )

    summary = get_performance_summary(results)
    assert list(summary["mode"].unique()) == ["walk_forward"]
    for _, row in summary.iterrows():
        chosen = frame[
            (frame["strategy"] == row["strategy"])
            & (frame["dataset"] == row["dataset"])
            & frame["selected"]
            & (frame["sample"] == "out_of_sample")
        ]
        assert row["n_splits"] == 3
        assert row["oos_mean_sharpe"] == pytest.approx(chosen["sharpe"].mean(), rel=1e-12)
        assert row["oos_compounded_return"] == pytest.approx(np.prod(1 + chosen["total_return"]) - 1, rel=1e-12)


def test_grid_summary_reports_the_best_combination(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        results = engine.run_backtest_sync(STRATEGIES, market, GRIDS)
        summary = engine.get_performance_summary(results)
    assert len(summary) == len(STRATEGIES) * len(market)
    for _, row in summary.iterrows():
        group = results.frame[
            (results.frame["strategy"] == row["strategy"]) & (results.frame["dataset"] == row["dataset"])
        ]
        best = group.loc[group["sharpe"].idxmax()]
        assert row["best_sharpe"] == best["sharpe"]
        assert row["n_combinations"] == len(group)
        assert row["best_params"] == {c: best[c] for c in _param_columns(group) if pd.notna(best[c])}
        assert row["share_profitable"] == pytest.approx((group["total_return"] > 0).mean())
    with pytest.raises(ValueError, match="lacks columns"):
        get_performance_summary(results.frame.drop(columns="sharpe"))
    with pytest.raises(ValueError, match="empty"):
        get_performance_summary(results.frame.iloc[:0])


def test_metrics_count_combinations_and_task_durations(market: dict[str, MarketData]) -> None:
    registry = CollectorRegistry()
    with _engine(registry=registry) as engine:
        results = engine.run_backtest_sync(STRATEGIES, market, GRIDS)
    assert engine.registry is registry
    for strategy, count in n_combinations().items():
        value = registry.get_sample_value("qframe_backtests_total", {"strategy": strategy, "backend": "sequential"})
        assert value == count * len(market)
    durations = registry.get_sample_value("qframe_backtest_task_duration_seconds_count", {"backend": "sequential"})
    assert durations == results.n_tasks
    # Two engines never share instruments unless given the same registry.
    assert _engine().registry is not _engine().registry


def _failing_after(limit: int, calls: list[str]) -> Callable[[BacktestTask, MarketData], pd.DataFrame]:
    def evaluate(task: BacktestTask, data: MarketData) -> pd.DataFrame:
        if len(calls) >= limit:
            raise RuntimeError("simulated crash")
        calls.append(task.task_id)
        return evaluate_task(task, data)

    return evaluate


def test_a_failed_sweep_resumes_from_checkpoints(market: dict[str, MarketData]) -> None:
    storage = MemoryStorage()
    first_calls: list[str] = []
    with (
        _engine(checkpoint_storage=storage, evaluator=_failing_after(4, first_calls)) as engine,
        pytest.raises(RuntimeError, match="simulated crash"),
    ):
        engine.run_backtest_sync(STRATEGIES, market, GRIDS)
    assert len(first_calls) == 4

    registry = CollectorRegistry()
    second_calls: list[str] = []
    with _engine(
        checkpoint_storage=storage, evaluator=_failing_after(10**6, second_calls), registry=registry
    ) as engine:
        resumed = engine.run_backtest_sync(STRATEGIES, market, GRIDS)
    assert SweepCheckpoints(storage, resumed.sweep_id).completed() == set(resumed.frame["task_id"])
    assert not set(first_calls) & set(second_calls)
    assert (resumed.n_resumed, resumed.n_computed) == (4, resumed.n_tasks - 4)
    assert registry.get_sample_value("qframe_backtest_tasks_resumed_total", {"backend": "sequential"}) == 4

    with _engine() as engine:
        fresh = engine.run_backtest_sync(STRATEGIES, market, GRIDS)
    assert fresh.sweep_id == resumed.sweep_id
    pd.testing.assert_frame_equal(resumed.frame, fresh.frame, check_exact=True)


def test_sweep_id_follows_the_inputs(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        first = engine.run_backtest_sync(["ma_crossover"], market, {"ma_crossover": GRIDS["ma_crossover"]})
        again = engine.run_backtest_sync(["ma_crossover"], market, {"ma_crossover": GRIDS["ma_crossover"]})
        richer = engine.run_backtest_sync(
            ["ma_crossover"], market, {"ma_crossover": GRIDS["ma_crossover"]}, initial_capital=1e6
        )
    assert first.sweep_id == again.sweep_id
    assert richer.sweep_id != first.sweep_id


def test_async_entry_point_and_one_shot_helper_give_the_same_frame(market: dict[str, MarketData]) -> None:
    with _engine() as engine:
        via_async = asyncio.run(engine.run_distributed_backtest(STRATEGIES, market, GRIDS))
    one_shot = run_backtest_sync(STRATEGIES, market, GRIDS, block_size=BLOCK)
    assert isinstance(via_async, BacktestResults)
    pd.testing.assert_frame_equal(via_async.frame, one_shot.frame, check_exact=True)


def test_logs_carry_the_sweep_id(market: dict[str, MarketData]) -> None:
    with structlog.testing.capture_logs() as logs, _engine() as engine:
        results = engine.run_backtest_sync(["ma_crossover"], market, {"ma_crossover": {"fast": [3], "slow": [21]}})
    events = {entry["event"]: entry for entry in logs}
    assert events["sweep started"]["sweep_id"] == results.sweep_id
    assert events["sweep finished"]["sweep_id"] == results.sweep_id
    assert events["sweep finished"]["rows"] == len(results.frame)


def test_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise() -> None:
    terminal = io.StringIO()
    with SweepProgress(4, description="backtest sweep-x", console=Console(file=terminal, force_terminal=True)) as bar:
        bar.advance(3)
        assert bar.completed == 3
    assert "backtest sweep-x" in terminal.getvalue()
    assert "3/4" in terminal.getvalue()
    pipe = io.StringIO()
    with SweepProgress(4, description="quiet", console=Console(file=pipe, force_terminal=False)) as bar:
        bar.advance(4)
    assert not bar.enabled
    assert pipe.getvalue() == ""


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e, m: e.run_backtest_sync(["nope"], m, {}), r"unknown strategies \['nope'\]"),
        (lambda e, m: e.run_backtest_sync([], m, {}), "no strategies given"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], m, {"momentum_breakout": {}}), "not run"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], m, None, block_size=0), "block_size must be"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], m, None, n_splits=-1), "n_splits must be"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], m, None, selection_metric="alpha"), "selection_metric"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], [], None), "no datasets given"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], [m["AAA"], m["AAA"]], None), "two datasets are named"),
        (lambda e, m: e.run_backtest_sync(["ma_crossover"], m, None, initial_capital=0), "initial_capital"),
    ],
)
def test_bad_sweep_inputs_are_refused_before_any_work(
    market: dict[str, MarketData],
    call: Callable[[DistributedBacktestEngine, dict[str, MarketData]], object],
    message: str,
) -> None:
    calls: list[str] = []
    with _engine(evaluator=_failing_after(10**6, calls)) as engine, pytest.raises(ValueError, match=message):
        call(engine, market)
    assert calls == []


def test_engine_options_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown compute_backend 'spark'"):
        DistributedBacktestEngine("spark")
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        DistributedBacktestEngine("sequential", block_size=-1)
