"""Sweeps that cannot mean anything are refused before any work, with the numbers: a lookback longer than
the data (or than the first train window), and so many walk-forward splits that windows hold a few bars."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from qframe.research.backtesting.engine import run_backtest_sync
from qframe.research.backtesting.sweep_plan import MIN_EVALUATION_BARS
from qframe.research.cli import app
from qframe.research.data_lake.synthetic import generate_market_data
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    yield CliRunner()
    structlog.reset_defaults()


def test_a_lookback_longer_than_the_data_is_refused_before_any_result_is_written(
    runner: CliRunner, tmp_path: Path
) -> None:
    bars = tmp_path / "bars.parquet"
    generate_market_data(["AAA"], periods=300, freq="1d", seed=2).to_parquet(bars)
    out = tmp_path / "out"
    args = ["-q", "backtest", "-s", "ma_crossover", "-g", "fast=5,10", "-g", "slow=50,500", "--file", str(bars)]
    args += ["--backend", "sequential", "--no-track", "--no-checkpoint", "--out", str(out)]
    result = runner.invoke(app, [*args, "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "ma_crossover.slow=500" in message
    assert "dataset 'AAA' has 300 bars" in message
    assert "Encountered all NA values" not in message
    assert not (out / "results.parquet").exists()


def test_a_lookback_longer_than_the_first_train_window_is_refused() -> None:
    bars = generate_market_data(["AAA"], periods=1000, freq="1h", seed=2)
    with pytest.raises(
        ValueError, match=r"ma_crossover\.slow=300: .* first train window of dataset 'AAA' has 200 bars"
    ):
        run_backtest_sync(
            ["ma_crossover"], [bars], {"ma_crossover": {"slow": [50, 300]}}, n_splits=4, train_size=200, test_size=200
        )


def test_thousands_of_splits_with_four_bar_windows_are_refused_up_front() -> None:
    bars = generate_market_data(["AAA"], periods=8687, freq="1h", seed=2)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="walk-forward splits") as refused:
        run_backtest_sync(
            ["ma_crossover"], [bars], {"ma_crossover": {"fast": [5, 10], "slow": [50, 100]}}, n_splits=2000
        )
    assert time.perf_counter() - started < 10
    message = str(refused.value)
    assert (
        "2000 walk-forward splits of dataset 'AAA' (8,687 bars) leave 687 bars per train window and 4 per test"
        in message
    )
    assert f"at least {MIN_EVALUATION_BARS} bars" in message
    most = int(message.split("use at most ")[1].split(maxsplit=1)[0])
    assert most == 8687 // MIN_EVALUATION_BARS - 2
    # and that many splits is accepted: the advice is honest
    results = run_backtest_sync(["ma_crossover"], [bars], {"ma_crossover": {"fast": [5], "slow": [10]}}, n_splits=most)
    assert results.frame["split_id"].nunique() == most
