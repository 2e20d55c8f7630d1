"""`qframe data ingest|validate` read the files researchers have (issue 15 item 6): --column-map, --symbol,
--timestamp-unit, --sep, --source-tz, --overwrite; lake columns matched case-insensitively (Yahoo's Date/Open);
errors name the CLI flags, not the Python keywords."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.cli import app
from qframe.research.data_lake.synthetic import generate_market_data
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR"):
        monkeypatch.delenv(key, raising=False)
    yield CliRunner()
    structlog.reset_defaults()


def _text(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def yahoo_csv(tmp_path: Path) -> Path:
    bars = generate_market_data(["SPY"], periods=60, freq="1D", seed=3)
    frame = pd.DataFrame(
        {
            "Date": bars["timestamp"].dt.strftime("%Y-%m-%d"),
            "Open": bars["open"],
            "High": bars["high"],
            "Low": bars["low"],
            "Close": bars["close"],
            "Adj Close": bars["close"],
            "Volume": bars["volume"],
        }
    )
    path = tmp_path / "SPY.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_yahoo_file_validates_with_symbol_and_the_error_without_it_names_the_flag(
    runner: CliRunner, yahoo_csv: Path
) -> None:
    missing = runner.invoke(app, ["-q", "data", "validate", str(yahoo_csv)])
    assert missing.exit_code == 2, missing.output
    text = _text(missing.output)
    assert "missing column(s) ['symbol']" in text
    assert "--symbol <ticker>" in text
    assert "--column-map" in text
    assert "symbol='" not in text
    assert "column_map=" not in text

    valid = runner.invoke(app, ["-q", "data", "validate", str(yahoo_csv), "--symbol", "SPY"])
    assert valid.exit_code == 0, valid.output
    assert "valid (60 bars)" in _text(valid.output)


def test_a_semicolon_file_of_epoch_milliseconds_ingests_with_its_flags(runner: CliRunner, tmp_path: Path) -> None:
    bars = generate_market_data(["BTC"], periods=50, freq="1h", seed=4)
    frame = bars.rename(columns={"timestamp": "ts", "symbol": "Ticker"})
    frame["ts"] = bars["timestamp"].astype("int64") // 10**6
    path = tmp_path / "btc.csv"
    frame.to_csv(path, index=False, sep=";")
    workdir = ["--workdir", str(tmp_path / "w")]

    no_unit = runner.invoke(app, ["-q", "data", "validate", str(path), "--sep", ";", "--column-map", "ts=timestamp"])
    assert no_unit.exit_code == 2, no_unit.output
    assert "--timestamp-unit s, ms, us or ns" in _text(no_unit.output)

    flags = ["--sep", ";", "--column-map", "ts=timestamp", "--timestamp-unit", "ms"]
    ingest = ["-q", "data", "ingest", str(path), "--name", "bars.btc-1h", "--version", "v1", *flags, *workdir]
    first = runner.invoke(app, ingest)
    assert first.exit_code == 0, first.output
    assert "wrote bars.btc-1h@v1: 50 bars" in _text(first.output)

    frame.loc[3, "volume"] += 1.0  # different content under the same version
    frame.to_csv(path, index=False, sep=";")
    again = runner.invoke(app, ingest)
    assert again.exit_code == 2, again.output
    assert "overwrite=True" not in _text(again.output)
    assert "--overwrite" in _text(again.output)

    bad = runner.invoke(app, ["-q", "data", "validate", str(path), "--column-map", "ts"])
    assert bad.exit_code == 2
    assert "--column-map 'ts' is not YOURS=lake" in _text(bad.output)


# `qframe backtest --file` reads files with the same flags and the same reader as the data commands.
_SWEEP = ["-q", "backtest", "-s", "ma_crossover", "-g", "fast=5", "-g", "slow=20", "--backend", "sequential"]
_SWEEP += ["--no-track", "--no-checkpoint"]


def test_backtest_reads_a_yahoo_file_with_its_symbol(runner: CliRunner, yahoo_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    where = ["--out", str(out), "--workdir", str(tmp_path / "w")]
    missing = runner.invoke(app, [*_SWEEP, "--file", str(yahoo_csv), *where])
    assert missing.exit_code == 2, missing.output
    assert "--symbol <ticker>" in _text(missing.output)

    result = runner.invoke(app, [*_SWEEP, "--file", str(yahoo_csv), "--symbol", "SPY", *where])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["dataset"]) == {"SPY"}


def test_backtest_reads_a_semicolon_file_of_epoch_milliseconds(runner: CliRunner, tmp_path: Path) -> None:
    bars = generate_market_data(["BTC", "ETH"], periods=80, freq="1h", seed=4)
    frame = bars.rename(columns={"timestamp": "ts"})
    frame["ts"] = bars["timestamp"].astype("int64") // 10**6
    path = tmp_path / "bars.csv"
    frame.to_csv(path, index=False, sep=";")
    out = tmp_path / "out"
    where = ["--out", str(out), "--workdir", str(tmp_path / "w")]

    unmapped = runner.invoke(app, [*_SWEEP, "--file", str(path), "--sep", ";", *where])
    assert unmapped.exit_code == 2, unmapped.output
    assert "--column-map" in _text(unmapped.output)
    assert "column_map=" not in _text(unmapped.output)

    flags = ["--sep", ";", "--column-map", "ts=timestamp", "--timestamp-unit", "ms"]
    result = runner.invoke(app, [*_SWEEP, "--file", str(path), *flags, "--symbol", "ETH", *where])
    assert result.exit_code == 0, result.output
    assert set(pd.read_parquet(out / "results.parquet")["dataset"]) == {"ETH"}

    with_data = runner.invoke(app, [*_SWEEP, "--data", "bars.x", "--sep", ";", *where])
    assert with_data.exit_code == 2, with_data.output
    assert "read a --file" in _text(with_data.output)
