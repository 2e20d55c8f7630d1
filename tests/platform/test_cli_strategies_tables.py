"""`qframe strategies` lists every strategy's parameters with defaults and ranges, and summary tables never cut a
parameter value (issue 15 item 11): cells wrap instead of ending in "…", and `qframe report --output json|csv`
gives the same rows whole."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.backtesting.strategies import available_strategies, get_strategy
from qframe.research.cli import app
from qframe.research.cli.backtest import summary_table
from qframe.research.data_lake.synthetic import generate_market_data
from rich.console import Console
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    yield CliRunner()
    structlog.reset_defaults()


def test_strategies_lists_every_parameter_with_default_and_range(runner: CliRunner) -> None:
    result = runner.invoke(app, ["strategies", "--output", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    listed = {(r["strategy"], r["parameter"]): r for r in records}
    expected = {(name, p) for name in available_strategies() for p in get_strategy(name).parameters}
    assert set(listed) == expected
    slow = listed["ma_crossover", "slow"]
    assert (slow["kind"], slow["default"], slow["minimum"], slow["maximum"]) == ("int", 50, 2, None)
    assert listed["ma_crossover", "allow_short"]["maximum"] == 1


def test_strategies_table_shows_defaults_and_ranges(runner: CliRunner) -> None:
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "allow_short" in line and "ma_crossover" in line)
    assert [cell.strip() for cell in line.split("│")][1:6] == ["ma_crossover", "allow_short", "int", "1", "0 .. 1"]


def _summary() -> pd.DataFrame:
    params = {"param_lookback_long": 100.0, "param_lookback_short": 10.0, "param_z_entry_base": 1.5}
    return pd.DataFrame(
        {
            "strategy": ["adaptive_mean_reversion"],
            "dataset": ["AAA"],
            "n_combinations": [4],
            "oos_mean_sharpe": [-4.2939672855],
            "is_mean_sharpe": [-2.2621721987],
            "oos_compounded_return": [-0.1445638552],
            "oos_worst_drawdown": [-0.1385429989],
            "oos_n_trades": [64],
            "most_chosen_params": [params],
        }
    )


@pytest.mark.parametrize("width", [60, 100, 160])
def test_summary_table_wraps_instead_of_cutting(width: int) -> None:
    console = Console(width=width, record=True, color_system=None)
    console.print(summary_table(_summary(), "t"))
    text = console.export_text()
    assert "…" not in text
    # Each cell's pieces, read top to bottom, give back the whole value.
    lines = [line.split("│")[1:-1] for line in text.splitlines() if "│" in line]
    params = "".join(cells[-1].strip() for cells in lines)
    assert params == "lookback_long=100lookback_short=10z_entry_base=1.5"
    assert "".join(cells[0].strip() for cells in lines) == "adaptive_mean_reversion"


def test_summary_table_keeps_each_parameter_whole_when_wide() -> None:
    console = Console(width=160, record=True, color_system=None)
    console.print(summary_table(_summary(), "t"))
    text = console.export_text()
    for piece in ("lookback_long=100", "lookback_short=10", "z_entry_base=1.5", "adaptive_mean_reversion"):
        assert piece in text


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    bars = root / "bars.parquet"
    generate_market_data(["AAA"], periods=300, freq="1h", seed=5).to_parquet(bars)
    args = ["-q", "backtest", "-s", "ma_crossover", "-g", "fast=5,10", "-g", "slow=30,40", "--file", str(bars)]
    args += ["--backend", "sequential", "--no-track", "--no-checkpoint", "--out", str(root / "out")]
    result = CliRunner().invoke(app, [*args, "--workdir", str(root / "w")])
    structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    return root / "out"


def test_report_as_json_and_csv(runner: CliRunner, finished_sweep: Path) -> None:
    as_json = runner.invoke(app, ["report", str(finished_sweep), "--output", "json"])
    assert as_json.exit_code == 0, as_json.output
    (row,) = json.loads(as_json.stdout)
    assert row["strategy"] == "ma_crossover"
    assert set(row["best_params"]) == {"fast", "slow", "allow_short"}
    assert row["best_params"]["fast"] in (5, 10)
    assert isinstance(row["best_params"]["slow"], int)

    as_csv = runner.invoke(app, ["report", str(finished_sweep), "--output", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    (csv_row,) = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert csv_row["best_params.fast"] == str(row["best_params"]["fast"])
    assert csv_row["best_params.slow"] == str(row["best_params"]["slow"])
