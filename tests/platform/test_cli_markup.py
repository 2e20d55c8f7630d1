"""Data is printed as data (issue 15 item 8, rich markup): a symbol like 'eth[perp]' or '[@v2]' in a dataset or a
summary used to lose its bracketed part, which rich took for a style tag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.cli import app
from qframe.research.cli.backtest import summary_table
from rich.console import Console
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    yield CliRunner()
    structlog.reset_defaults()


def test_bracketed_symbols_survive_data_list_and_show(runner: CliRunner, tmp_path: Path) -> None:
    workdir = ["--workdir", str(tmp_path / "w")]
    made = runner.invoke(app, ["-q", "data", "generate", "--symbols", "eth[perp]", "--periods", "20", *workdir])
    assert made.exit_code == 0, made.output
    listed = runner.invoke(app, ["-q", "data", "list", *workdir])
    assert listed.exit_code == 0, listed.output
    assert "eth[perp]" in listed.stdout
    shown = runner.invoke(app, ["-q", "data", "show", "bars.synthetic-1h", "--head", "1", *workdir])
    assert shown.exit_code == 0, shown.output
    assert "symbols eth[perp]," in shown.stdout
    assert shown.stdout.count("eth[perp]") == 2  # the entry and the first row


def test_bracketed_dataset_names_survive_the_summary_table() -> None:
    summary = pd.DataFrame(
        {"strategy": ["ma_crossover"], "dataset": ["btc[@v2]"], "n_combinations": [1], "best_sharpe": [0.5]}
    )
    console = Console(width=120, record=True, color_system=None)
    console.print(summary_table(summary, "t"))
    assert "btc[@v2]" in console.export_text()
