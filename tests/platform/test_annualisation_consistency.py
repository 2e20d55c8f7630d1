"""One annualisation per run: the bar frequency is inferred (calendar-aware) or given, and the same Sharpe
shows in the CLI summary, the tear sheet, the MLflow ``analysis.*`` metrics and the analyzer.

Hourly bars around the clock (crypto-like) must be annualised with 8,760 bars a year, daily exchange bars with
252, hourly exchange-session bars with 252 x bars per session; a user's --bars-per-year wins everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import structlog
from mlflow.tracking import MlflowClient
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.evaluate import simulate
from qframe.research.backtesting.types import MarketData
from qframe.research.bar_frequency import infer_bar_frequency, resolve_frequency
from qframe.research.cli import app
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.reporting.tear_sheet import format_value
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

GRID = ["-g", "fast=5,10,20", "-g", "slow=50,100"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield CliRunner()
    structlog.reset_defaults()


def test_frequency_inference_knows_the_calendar() -> None:
    hourly_24_7 = infer_bar_frequency(pd.date_range("2024-01-01", periods=2000, freq="1h", tz="UTC"))
    assert (hourly_24_7.bars_per_year, hourly_24_7.calendar) == (8760.0, "24/7")
    assert "1h bars, 24/7 calendar" in hourly_24_7.describe()
    daily_exchange = infer_bar_frequency(pd.date_range("2023-01-02", periods=500, freq="B", tz="UTC"))
    assert (daily_exchange.bars_per_year, daily_exchange.calendar) == (252.0, "exchange sessions")
    assert infer_bar_frequency(pd.date_range("2023-01-01", periods=500, freq="D", tz="UTC")).bars_per_year == 365.0
    # NYSE-like hourly bars 14:30..20:30 UTC on weekdays: 7 bars a session.
    stamps = pd.date_range("2024-01-01 14:30", periods=24 * 200, freq="1h", tz="UTC")
    session = stamps[(stamps.day_of_week < 5) & (stamps.hour >= 14) & (stamps.hour <= 20)]
    hourly_exchange = infer_bar_frequency(session)
    assert (hourly_exchange.bars_per_year, hourly_exchange.bars_per_session) == (252.0 * 7, 7.0)
    assert infer_bar_frequency(pd.date_range("2020-01-31", periods=48, freq="ME", tz="UTC")).bars_per_year == 12.0
    assert resolve_frequency(session, 1000.0).bars_per_year == 1000.0
    with pytest.raises(ValueError, match="bars_per_year must be a positive number"):
        resolve_frequency(session, 0.0)


def _summary_sharpe(stdout: str) -> float:
    # The summary row of ma_crossover on AAA: ... best sharpe is the first figure after the combinations count.
    row = next(line for line in stdout.splitlines() if line.startswith("│ ma_crossover │ AAA"))
    cells = [c.strip() for c in re.split(r"│", row) if c.strip()]
    return float(cells[3])


@pytest.mark.parametrize("override", [None, 2000.0])
def test_the_same_run_shows_the_same_sharpe_in_summary_tear_sheet_mlflow_and_analyzer(
    runner: CliRunner, tmp_path: Path, override: float | None
) -> None:
    bars = generate_market_data(["AAA"], periods=2000, freq="1h", seed=5)  # around the clock, weekends included
    bars_file = tmp_path / "bars.parquet"
    bars.to_parquet(bars_file)
    out = tmp_path / "out"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["backtest", "-s", "ma_crossover", *GRID, "--file", str(bars_file), "--backend", "sequential"]
    args += ["--out", str(out), "--tracking-uri", tracking, "--workdir", str(tmp_path / "w"), "--no-checkpoint"]
    if override is not None:
        args += ["--bars-per-year", str(override)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    expected_bpy = 8760.0 if override is None else override
    if override is None:
        assert "annualised   AAA: 1h bars, 24/7 calendar: 8,760 bars/year (inferred" in result.output
    else:
        assert "annualised   AAA: 2,000 bars/year (given)" in result.output

    # 1. the summary (summary.csv holds the figure the table prints)
    summary = pd.read_csv(out / "summary.csv")
    summary_sharpe = float(summary.loc[summary["strategy"] == "ma_crossover", "best_sharpe"].iloc[0])
    assert _summary_sharpe(result.output) == pytest.approx(summary_sharpe, rel=5e-4)  # printed with 4 digits

    # 2. the analyzer, as a researcher calls it on the best combination (no bars_per_year: inferred)
    best = pd.read_parquet(out / "results.parquet").sort_values("sharpe", ascending=False).iloc[0]
    params = {"fast": int(best["param_fast"]), "slow": int(best["param_slow"])}
    sim = simulate("ma_crossover", MarketData.from_bars(bars, symbol="AAA"), params, bars_per_year=override)
    analyzer = AdvancedPerformanceAnalyzer(bars_per_year=override, n_simulations=50)
    analysis = analyzer.analyze_comprehensive(sim)
    analyzer_sharpe = analysis.basic_metrics["sharpe_ratio"]
    assert analysis.frequency.bars_per_year == expected_bpy

    # 3. MLflow analysis.* of the strategy's run
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("backtests")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (run,) = [r for r in runs if "analysis.sharpe_ratio" in r.data.metrics]
    mlflow_sharpe = run.data.metrics["analysis.sharpe_ratio"]
    assert run.data.metrics["analysis.bars_per_year"] == expected_bpy

    # 4. the tear sheet
    sheet = (out / "tear_sheets" / "ma_crossover.html").read_text()
    assert f"<th>sharpe_ratio</th><td>{format_value(analyzer_sharpe)}</td>" in sheet
    stated = "1h bars, 24/7 calendar: 8,760 bars/year (inferred" if override is None else "2,000 bars/year (given)"
    assert f"annualised with {stated}" in sheet

    assert math.isfinite(summary_sharpe)
    assert summary_sharpe == pytest.approx(analyzer_sharpe, rel=1e-9)
    assert mlflow_sharpe == pytest.approx(analyzer_sharpe, rel=1e-9)
    assert sim.metrics["sharpe"] == pytest.approx(analyzer_sharpe, rel=1e-9)
    # and the annual return is the compounded total over the years the bars span
    years = len(sim.returns) / expected_bpy
    total = analysis.basic_metrics["total_return"]
    assert analysis.basic_metrics["annualized_return"] == pytest.approx((1 + total) ** (1 / years) - 1, rel=1e-9)
    assert np.isfinite(analysis.basic_metrics["volatility"])
