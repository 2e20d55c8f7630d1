"""Misspelt choices outside `qframe backtest` (issue 15 item 8): `qframe data list --type` and `qframe report
--metric` say "did you mean" with the valid values, before the catalog or the results are opened."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from qframe.research.cli import app
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    yield CliRunner()
    structlog.reset_defaults()


def test_misspelt_dataset_type(runner: CliRunner, tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["-q", "data", "list", "--type", "raw_market_dta", "--workdir", str(workdir)])
    assert result.exit_code == 2, result.output
    assert (
        "unknown --type 'raw_market_dta'; did you mean 'raw_market_data'? choose from: "
        "raw_market_data, features, backtest_results, alternative_data"
    ) in " ".join(result.output.split())
    assert not workdir.exists()  # refused before the catalog was opened (which creates it)


def test_misspelt_report_metric(runner: CliRunner, tmp_path: Path) -> None:
    # No results there: the metric is checked first.
    result = runner.invoke(app, ["report", str(tmp_path / "none"), "--metric", "sharp"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "unknown --metric 'sharp'; did you mean 'sharpe'? choose from: sharpe, sortino" in text


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ("fats=5,10", "unknown --grid parameter of ma_crossover: 'fats'; did you mean 'fast'? choose from: fast, slow"),
        ("fast=0,10", "--grid ma_crossover.fast must be >= 1, got 0"),
        ("fast=2.5", "--grid ma_crossover.fast takes whole numbers, got 2.5"),
    ],
)
def test_grid_parameters_are_checked_before_the_data_is_read(
    runner: CliRunner, tmp_path: Path, grid: str, expected: str
) -> None:
    missing = tmp_path / "not-read.parquet"  # reaching it would be a different error
    args = ["-q", "backtest", "-s", "ma_crossover", "-g", grid, "--file", str(missing), "--no-track"]
    result = runner.invoke(app, [*args, "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert expected in text
    assert "not-read" not in text


def test_an_unreachable_tracker_is_one_line_naming_the_flags_before_the_data_is_read(
    runner: CliRunner, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    missing = tmp_path / "not-read.parquet"
    args = [
        "-q",
        "backtest",
        "-s",
        "ma_crossover",
        "--file",
        str(missing),
        "--tracking-uri",
        f"http://127.0.0.1:{port}",
    ]
    result = runner.invoke(app, [*args, "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "is not reachable" in lines[0]
    assert "--tracking-uri URL or MLFLOW_TRACKING_URI; --no-track runs without MLflow" in lines[0]
    assert "not-read" not in lines[0]
    assert not (tmp_path / "out").exists()
