"""`qframe backtest` input errors a researcher meets first (issue 15 item 8, backtest part): misspelt names
fail at once with "did you mean" and the valid values, before any data is read; an absent --symbol lists the
symbols that exist; --help shows NAME[@VERSION] (rich markup used to eat it)."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-s", "ma_crosover"], "unknown --strategy 'ma_crosover'; did you mean 'ma_crossover'? choose from: "),
        (["-s", "ma_crossover", "--metric", "sharp"], "unknown --metric 'sharp'; did you mean 'sharpe'?"),
        (["-s", "ma_crossover", "--backend", "dsak"], "unknown --backend 'dsak'; did you mean 'dask'?"),
    ],
)
def test_misspelt_names_fail_before_the_data_is_read(
    runner: CliRunner, tmp_path: Path, args: list[str], expected: str
) -> None:
    # The file does not exist: reaching it would be a different error, so the name check came first.
    missing = tmp_path / "not-read.parquet"
    result = runner.invoke(app, ["-q", "backtest", *args, "--file", str(missing), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert expected in text
    assert "adaptive_mean_reversion, ma_crossover, momentum_breakout" in text or "--strategy" not in expected
    assert "not-read" not in text


def test_an_absent_symbol_lists_the_symbols_of_the_dataset(runner: CliRunner, tmp_path: Path) -> None:
    workdir = ["--workdir", str(tmp_path / "w")]
    made = runner.invoke(
        app, ["-q", "data", "generate", "--symbols", "AAA,BBB", "--periods", "300", "--version", "v1", *workdir]
    )
    assert made.exit_code == 0, made.output
    args = ["-q", "backtest", "-s", "ma_crossover", "--data", "bars.synthetic-1h@v1", "--symbol", "XRPUSDT"]
    result = runner.invoke(app, [*args, "--no-track", "--out", str(tmp_path / "out"), *workdir])
    assert result.exit_code == 2, result.output
    assert "symbol(s) ['XRPUSDT'] not in bars.synthetic-1h@v1; present: ['AAA', 'BBB']" in " ".join(
        result.output.split()
    )


def test_help_keeps_square_brackets(runner: CliRunner) -> None:
    result = runner.invoke(app, ["backtest", "--help"])
    assert result.exit_code == 0
    assert "NAME[@VERSION]" in result.output
