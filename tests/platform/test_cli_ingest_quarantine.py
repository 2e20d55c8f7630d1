"""`qframe data ingest --quarantine` says what it set aside, per rule, and refuses a mostly-bad file
(issue 15 item 7): above --max-quarantine (1% by default) nothing is written and the exit code is 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


def _ingest(runner: CliRunner, path: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = ["-q", "data", "ingest", str(path), "--name", "bars.test", "--version", "v1", "--quarantine", *extra]
    result = runner.invoke(app, [*args, "--workdir", str(tmp_path / "w")])
    return result.exit_code, _text(result.output)


def test_an_unsorted_file_is_refused_with_counts_per_rule_and_a_sort_hint(runner: CliRunner, tmp_path: Path) -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=2000, freq="1h", seed=3)
    path = tmp_path / "unsorted.parquet"
    bars.sample(frac=1.0, random_state=1).reset_index(drop=True).to_parquet(path)
    code, text = _ingest(runner, path, tmp_path)
    assert code == 1, text
    assert "of 4,000 rows" in text
    assert "above --max-quarantine 1.00%; nothing was written" in text
    assert "timestamp_not_increasing:" in text
    assert "sort the file by symbol and timestamp" in text
    assert not list((tmp_path / "w").rglob("*.parquet"))

    code, text = _ingest(runner, path, tmp_path, "--max-quarantine", "60%")
    assert code == 0, text
    assert "quarantined" in text
    assert "timestamp_not_increasing:" in text
    assert "wrote bars.test@v1" in text


def test_a_few_bad_rows_are_set_aside_and_reported(runner: CliRunner, tmp_path: Path) -> None:
    bars = generate_market_data(["AAA"], periods=1000, freq="1h", seed=3)
    bars.loc[10, "low"] = -1.0
    path = tmp_path / "one_bad.parquet"
    bars.to_parquet(path)
    code, text = _ingest(runner, path, tmp_path)
    assert code == 0, text
    assert "quarantined 1 of 1,000 rows (0.10%)" in text
    assert "low_not_positive: 1 rows" in text
    assert "wrote bars.test@v1: 999 bars" in text

    code, text = _ingest(runner, path, tmp_path, "--max-quarantine", "lots")
    assert code == 2
    assert "--max-quarantine 'lots' is not a share" in text
