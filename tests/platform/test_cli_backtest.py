"""`qframe backtest` and `qframe report` on a bars file, sequential backend, local MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from mlflow.tracking import MlflowClient
from qframe.research.backtesting.evaluate import simulate
from qframe.research.backtesting.types import CostModel, MarketData
from qframe.research.cli import app
from qframe.research.cli.backtest import parse_grids
from qframe.research.data_lake.synthetic import generate_market_data
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def bars_file(tmp_path: Path) -> Path:
    path = tmp_path / "bars.parquet"
    generate_market_data(["AAA", "BBB"], periods=1200, freq="1h", seed=3).to_parquet(path)
    return path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield CliRunner()
    structlog.reset_defaults()


def test_grid_specs_parse_per_strategy() -> None:
    grids = parse_grids(
        ["ma_crossover.fast=5,10", "ma_crossover.slow=20:40:10", "momentum_breakout.lookback=24"],
        ["ma_crossover", "momentum_breakout"],
    )
    assert grids == {"ma_crossover": {"fast": [5, 10], "slow": [20, 30, 40]}, "momentum_breakout": {"lookback": [24]}}
    assert parse_grids(["fast=5"], ["ma_crossover"]) == {"ma_crossover": {"fast": [5]}}


def test_walk_forward_backtest_writes_results_tear_sheets_and_mlflow(
    runner: CliRunner, bars_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "-q",
        "backtest",
        "-s",
        "ma_crossover",
        "-g",
        "fast=5,10,20",
        "-g",
        "slow=50,100",
        "--file",
        str(bars_file),
        "--backend",
        "sequential",
        "--splits",
        "3",
        "--purge",
        "5",
        "--out",
        str(out),
        "--tracking-uri",
        tracking,
        "--workdir",
        str(tmp_path / "w"),
        "--no-checkpoint",
    ]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    frame = pd.read_parquet(out / "results.parquet")
    # 2 symbols x 3 splits x 6 combinations x (in-sample + out-of-sample)
    assert len(frame) == 2 * 3 * 6 * 2
    assert set(frame["sample"]) == {"in_sample", "out_of_sample"}
    chosen = frame[(frame["sample"] == "out_of_sample") & frame["selected"]]
    assert len(chosen) == 2 * 3  # one choice per split and symbol
    for symbol in ("AAA", "BBB"):  # one tear sheet per symbol
        assert (out / "tear_sheets" / f"ma_crossover.{symbol}.png").stat().st_size > 10_000
    assert "oos" in (out / "summary.csv").read_text()

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("backtests")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    # one nested run per strategy and symbol, each with its symbol's tear sheet
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [parents[0].info.run_id] * 2
    assert sorted(c.data.params["dataset"] for c in children) == ["AAA", "BBB"]
    assert all(r.info.status == "FINISHED" for r in runs)

    report = runner.invoke(app, ["-q", "report", str(out)], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    assert "ma_crossover" in report.output
    assert "tear sheet" in report.output


def test_grid_backtest_tear_sheet_is_the_best_combination(runner: CliRunner, bars_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "-q",
        "backtest",
        "-s",
        "ma_crossover",
        "-g",
        "fast=5,10",
        "-g",
        "slow=30,60",
        "--file",
        str(bars_file),
        "--symbol",
        "AAA",
        "--backend",
        "sequential",
        "--out",
        str(out),
        "--no-track",
        "--no-checkpoint",
        "--workdir",
        str(tmp_path / "w"),
    ]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 4
    best = frame.loc[frame["sharpe"].idxmax()]
    # The summary's best row is the combination the full-series simulation reproduces.
    bars = pd.read_parquet(bars_file)
    sim = simulate(
        "ma_crossover",
        MarketData.from_bars(bars, symbol="AAA", name="AAA"),
        {"fast": int(best["param_fast"]), "slow": int(best["param_slow"]), "allow_short": 1},
        costs=CostModel(),
    )
    assert sim.metrics["sharpe"] == pytest.approx(best["sharpe"], rel=1e-12)
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "best_sharpe"] == pytest.approx(best["sharpe"], rel=1e-9)
    # the sheet's title names the symbol and the file it came from, and the chosen parameters
    title = f"ma_crossover on AAA (bars.parquet): best by sharpe fast={int(best['param_fast'])}, "
    assert title in (out / "tear_sheets" / "ma_crossover.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "nope", "--file", "{bars}"], "nope"),
        (["-s", "ma_crossover", "-g", "ma_crossover.speed=1", "--file", "{bars}"], "speed"),
        (["-s", "ma_crossover", "-g", "other.fast=1", "--file", "{bars}"], "not among"),
        (["-s", "ma_crossover"], "exactly one data source"),
        (["-s", "ma_crossover", "--file", "{bars}", "--symbol", "ZZZ"], "ZZZ"),
        (["-s", "ma_crossover", "--file", "{bars}", "--splits", "700"], "split"),
    ],
)
def test_bad_input_is_one_plain_line(
    runner: CliRunner, bars_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [a.replace("{bars}", str(bars_file)) for a in args]
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "-q",
            "backtest",
            *filled,
            "--backend",
            "sequential",
            "--no-track",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (out / "results.parquet").exists()
