"""The core backtest benchmark runs end to end on a small problem and reports consistent figures."""

from __future__ import annotations

import pytest

from benchmarks.bench_backtest import ma_combos, measure_peak_memory, run_core_bench

pytestmark = pytest.mark.services  # the memory figure comes from a subprocess


def test_ma_combos_are_valid_and_as_many_as_asked() -> None:
    for count in (1, 7, 100, 1000):
        combos = ma_combos(count)
        assert len(combos) == count
        assert len({tuple(sorted(c.items())) for c in combos}) == count
        assert all(c["fast"] < c["slow"] for c in combos)


def test_core_bench_figures_are_consistent() -> None:
    figures = run_core_bench(bars=20_000, combos=12, repeats=2)
    assert figures["bar_evaluations"] == 20_000 * 12
    assert len(figures["warm_runs_s"]) == 2
    assert figures["warm_best_s"] == min(figures["warm_runs_s"])
    assert figures["evals_per_s_best"] == pytest.approx(240_000 / figures["warm_best_s"])
    assert figures["evals_per_s_best"] >= figures["evals_per_s_median"] > 0
    assert figures["mean_trades"] > 0


def test_peak_memory_probe_reports_its_own_process() -> None:
    figures = measure_peak_memory(bars=50_000, combos=30)
    assert figures["rows"] == 30
    assert figures["combos"] == 30
    assert figures["peak_rss_mb"] >= figures["rss_before_evaluate_mb"] > 20
    # A fresh interpreter with numpy/pandas/numba and 50k bars stays far below the 1 GB goal.
    assert figures["peak_rss_mb"] < 1_000
