"""Tracking interface on the in-memory fake: run life cycle, validation before any run, summaries, reports."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.results import summarize_results
from qframe.research.reporting import log_strategy_report
from qframe.research.tracking import InMemoryTracker, TrackingError, flatten_params

pytestmark = pytest.mark.unit


def results_table() -> pd.DataFrame:
    rows = []
    for split in (0, 1):
        for fast in (5, 10):
            for slow in (50, 100):
                rows.append(
                    {
                        "task_id": f"t{split}",
                        "strategy": "ma_crossover",
                        "dataset": "AAA",
                        "split_id": split,
                        "param_fast": fast,
                        "param_slow": slow,
                        "sharpe": {(5, 50): 0.5, (5, 100): 1.5, (10, 50): 1.0, (10, 100): -0.2}[(fast, slow)]
                        + (0.4 if split else -0.4),
                        "total_return": fast / 100 + split / 10,
                        "max_drawdown": -slow / 1000,
                        "n_trades": fast + slow,
                    }
                )
    return pd.DataFrame(rows)


def test_flatten_params() -> None:
    flat = flatten_params(
        {"backend": "dask", "grid": {"fast": [5, 10], "slow": (50,)}, "n": np.int64(3), "datasets": {"b", "a"}}
    )
    assert flat == {
        "backend": "dask",
        "grid.fast": "[5, 10]",
        "grid.slow": "[50]",
        "n": "3",
        "datasets": '["a", "b"]',
    }
    with pytest.raises(ValueError, match="non-empty strings"):
        flatten_params({"": 1})


def test_summary_averages_splits_then_picks_best() -> None:
    summary = summarize_results(results_table(), metric="sharpe")
    # per combination the +/-0.4 split offsets cancel: best is (5, 100) with sharpe 1.5
    assert summary.best_params == {"fast": 5, "slow": 100}
    assert isinstance(summary.best_params["fast"], int)
    assert summary.best_metrics["sharpe"] == pytest.approx(1.5)
    assert summary.best_metrics["total_return"] == pytest.approx(0.05 + 0.05)
    assert "split_id" not in summary.best_metrics
    assert summary.n_combinations == 4
    assert summary.n_rows == 8
    agg = summary.aggregates
    assert agg["mean.sharpe"] == pytest.approx((0.5 + 1.5 + 1.0 - 0.2) / 4)
    assert agg["median.sharpe"] == pytest.approx((0.5 + 1.0) / 2)
    assert agg["min.sharpe"] == pytest.approx(-0.2)
    assert agg["max.max_drawdown"] == pytest.approx(-0.05)
    worst = summarize_results(results_table(), metric="sharpe", maximize=False)
    assert worst.best_params == {"fast": 10, "slow": 100}
    metrics = summary.metrics()
    assert metrics["best.sharpe"] == pytest.approx(1.5)
    assert metrics["combinations"] == 4.0
    assert summary.params() == {"best.fast": 5, "best.slow": 100}


def test_summary_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        summarize_results(pd.DataFrame())
    with pytest.raises(ValueError, match="param_"):
        summarize_results(pd.DataFrame({"sharpe": [1.0]}))
    with pytest.raises(ValueError, match="metric 'calmar'"):
        summarize_results(results_table(), metric="calmar")


def test_sweep_life_cycle_and_nested_strategies(tmp_path: Path) -> None:
    tracker = InMemoryTracker()
    art = tmp_path / "sheet.png"
    art.write_bytes(b"png-bytes")
    with tracker.start_sweep("grid", {"backend": "sequential", "grid": {"fast": [5, 10]}}, {"team": "q"}) as sweep:
        assert tracker.active_sweep == sweep
        child = tracker.log_strategy(
            "ma_crossover",
            {"fast": 5},
            {"best.sharpe": 1.5, "undefined": math.nan, "none": None, "n": np.int64(4)},
            results_frame=results_table(),
            artifacts={"tear_sheet/ma_crossover.png": art},
        )
        tracker.log_sweep_metrics({"strategies": 1, "best.sharpe": 1.5, "bad": math.inf})
    assert tracker.active_sweep is None
    (recorded,) = tracker.sweeps
    assert recorded.status == "FINISHED"
    assert recorded.params == {"backend": "sequential", "grid.fast": "[5, 10]"}
    assert recorded.tags == {"team": "q"}
    assert recorded.metrics == {"strategies": 1.0, "best.sharpe": 1.5}
    assert recorded.undefined_metrics == ["bad"]
    (strategy,) = recorded.strategies
    assert strategy.run_id == child
    assert strategy.metrics == {"best.sharpe": 1.5, "n": 4.0}
    assert strategy.tags["qframe.undefined_metrics"] == "none,undefined"
    assert strategy.tags["qframe.strategy"] == "ma_crossover"
    assert strategy.artifacts == {"tear_sheet/ma_crossover.png": b"png-bytes"}
    assert strategy.results is not None
    pd.testing.assert_frame_equal(strategy.results, results_table())


def test_exception_in_sweep_marks_failed_and_reraises() -> None:
    tracker = InMemoryTracker()
    with pytest.raises(RuntimeError, match="boom"), tracker.start_sweep("grid"):
        raise RuntimeError("boom")
    assert tracker.sweeps[0].status == "FAILED"
    with pytest.raises(KeyboardInterrupt), tracker.start_sweep("again"):
        raise KeyboardInterrupt
    assert tracker.sweeps[1].status == "KILLED"
    assert tracker.active_sweep is None


def test_bad_input_rejected_before_any_run(tmp_path: Path) -> None:
    tracker = InMemoryTracker()
    with pytest.raises(TrackingError, match=r"inside `with tracker\.start_sweep"):
        tracker.log_strategy("s", {}, {})
    with pytest.raises(ValueError, match="non-empty string"):
        tracker.start_sweep(" ").__enter__()
    assert tracker.sweeps == []
    with tracker.start_sweep("grid"):
        with pytest.raises(TrackingError, match="still active"), tracker.start_sweep("nested"):
            pass
        with pytest.raises(ValueError, match="not an existing file"):
            tracker.log_strategy("s", {}, {}, artifacts={"a.png": tmp_path / "missing.png"})
        with pytest.raises(ValueError, match="relative file path"):
            tracker.log_strategy("s", {}, {}, artifacts={"../escape.png": __file__})
        with pytest.raises(ValueError, match="must be a number"):
            tracker.log_strategy("s", {}, {"sharpe": "high"})
        with pytest.raises(TypeError, match="DataFrame"):
            tracker.log_strategy("s", {}, {}, results_frame=[1, 2])
    assert len(tracker.sweeps) == 1
    assert tracker.sweeps[0].strategies == []


def test_log_strategy_report_builds_tear_sheet_and_logs_summary(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    index = pd.date_range("2024-01-01", periods=300, freq="D", tz="UTC")
    returns = pd.Series(rng.normal(0.001, 0.01, 300), index=index)
    equity = 100_000 * (1 + returns).cumprod()
    tracker = InMemoryTracker()
    analyzer = AdvancedPerformanceAnalyzer(n_simulations=200)
    with tracker.start_sweep("grid", {"strategies": ["ma_crossover"]}):
        report = log_strategy_report(
            tracker,
            "ma_crossover",
            results_table(),
            equity=equity,
            returns=returns,
            out_dir=tmp_path,
            params={"grid": {"fast": [5, 10], "slow": [50, 100]}},
            heatmap_params=("fast", "slow"),
            analyzer=analyzer,
        )
    (strategy,) = tracker.sweeps[0].strategies
    assert strategy.run_id == report.run_id
    assert strategy.params["best.fast"] == "5"
    assert strategy.params["grid.slow"] == "[50, 100]"
    assert strategy.params["selection_metric"] == "sharpe"
    assert strategy.metrics["best.sharpe"] == pytest.approx(1.5)
    expected = analyzer.analyze_comprehensive(returns).basic_metrics
    assert strategy.metrics["analysis.sharpe_ratio"] == pytest.approx(expected["sharpe_ratio"])
    assert set(strategy.artifacts) == {"tear_sheet/ma_crossover.png", "tear_sheet/ma_crossover.html"}
    assert strategy.artifacts["tear_sheet/ma_crossover.png"][:4] == b"\x89PNG"
    assert report.tear_sheet.heatmap is not None
    assert report.tear_sheet.heatmap.loc[5, 100] == pytest.approx(1.5)


def test_importing_the_package_does_not_import_mlflow() -> None:
    code = (
        "import sys, qframe.research.tracking, qframe.research.reporting, qframe.research.backtesting.analytics;"
        "sys.exit(1 if 'mlflow' in sys.modules or 'matplotlib.pyplot' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


def test_walk_forward_summary_keeps_out_of_sample_separate() -> None:
    grid = results_table().assign(sample="in_sample", selected=False)
    # per split, the combination chosen on the train window is scored on the following test window
    oos = pd.DataFrame(
        {
            "task_id": ["o0", "o0", "o1"],
            "strategy": "ma_crossover",
            "dataset": "AAA",
            "split_id": [0, 0, 1],
            "param_fast": [5, 10, 5],
            "param_slow": [100, 50, 100],
            "sharpe": [0.3, 9.0, -0.1],  # the 9.0 row was not selected and must not count anywhere
            "total_return": [0.02, 0.5, -0.01],
            "max_drawdown": [-0.04, -0.01, -0.06],
            "n_trades": [3, 3, 4],
            "sample": "out_of_sample",
            "selected": [True, False, True],
        }
    )
    summary = summarize_results(pd.concat([grid, oos], ignore_index=True), metric="sharpe")
    assert summary.best_params == {"fast": 5, "slow": 100}  # chosen on in-sample rows only
    assert summary.best_metrics["sharpe"] == pytest.approx(1.5)
    assert summary.aggregates["max.sharpe"] == pytest.approx(1.5)  # the OOS 9.0 is not in the grid figures
    assert summary.aggregates["oos.mean.sharpe"] == pytest.approx((0.3 - 0.1) / 2)
    assert summary.aggregates["oos.compounded_return"] == pytest.approx(1.02 * 0.99 - 1)
    assert summary.aggregates["oos.worst.max_drawdown"] == pytest.approx(-0.06)
    assert summary.aggregates["oos.splits"] == 2.0
    assert summary.n_rows == 11
    assert "oos.mean.sharpe" not in summarize_results(results_table()).aggregates
