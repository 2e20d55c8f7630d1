"""What `qframe` leaves behind (issue 15 item 9): no empty results directory after bad input, results and tear
sheets readable by teammates (the umask, not 0600), a `qframe status` that creates nothing, quiet stderr by
default (info logs with -v)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from qframe.research.atomic_files import atomic_write_bytes, current_umask
from qframe.research.cli import app
from qframe.research.data_lake.synthetic import generate_market_data
from typer.testing import CliRunner, Result

pytestmark = pytest.mark.unit


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    yield CliRunner()
    structlog.reset_defaults()


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture
def bars(tmp_path: Path) -> Path:
    path = tmp_path / "bars.parquet"
    generate_market_data(["AAA"], periods=300, freq="1h", seed=5).to_parquet(path)
    return path


def _backtest(runner: CliRunner, tmp_path: Path, bars: Path, *grid: str, more: tuple[str, ...] = ()) -> Result:
    args = ["backtest", "-s", "ma_crossover", *grid, "--file", str(bars), "--no-track", "--no-checkpoint"]
    return runner.invoke(app, [*more, *args, "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w")])


def test_a_refused_sweep_leaves_no_results_directory(runner: CliRunner, tmp_path: Path, bars: Path) -> None:
    # A lookback longer than the 300 bars is refused by the engine, after the CLI's own checks.
    result = _backtest(runner, tmp_path, bars, "-g", "fast=5", "-g", "slow=500", more=("-q",))
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out").exists()


def test_results_and_tear_sheets_follow_the_umask(
    runner: CliRunner, tmp_path: Path, bars: Path, umask_022: None
) -> None:
    result = _backtest(runner, tmp_path, bars, "-g", "fast=5,10", "-g", "slow=30,40", more=("-q",))
    assert result.exit_code == 0, result.output
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"results.parquet", "summary.csv", "ma_crossover.png", "ma_crossover.html"}
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o644"}, modes


def test_atomic_write_uses_the_umask_of_the_moment(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        path = atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left


def test_status_creates_no_workdir_lake_or_catalog(runner: CliRunner, tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["-q", "status", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert not workdir.exists()
    assert '"catalog": "absent' in result.output
    assert '"data_lake": "absent' in result.output


def test_status_reports_an_existing_catalog_without_changing_it(runner: CliRunner, tmp_path: Path) -> None:
    workdir = ["--workdir", str(tmp_path / "w")]
    made = runner.invoke(app, ["-q", "data", "generate", "--symbols", "AAA", "--periods", "50", *workdir])
    assert made.exit_code == 0, made.output
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("*")}
    result = runner.invoke(app, ["-q", "status", *workdir])
    assert result.exit_code == 0, result.output
    assert '"catalog": "ready (1 dataset versions)"' in result.output
    assert '"data_lake": "present"' in result.output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("*")} == before


def test_info_logs_only_with_verbose(runner: CliRunner, tmp_path: Path) -> None:
    args = ["data", "generate", "--symbols", "AAA", "--periods", "50", "--workdir", str(tmp_path / "w")]
    quiet = runner.invoke(app, [*args, "--version", "v1"])
    assert quiet.exit_code == 0, quiet.output
    assert "[info" not in quiet.stderr
    loud = runner.invoke(app, ["-v", *args, "--version", "v2"])
    assert loud.exit_code == 0, loud.output
    assert "[info" in loud.stderr
    assert "[debug" not in loud.stderr


def test_status_still_refuses_a_lake_url_the_lake_would_refuse(runner: CliRunner, tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    result = runner.invoke(app, ["-q", "status", "--lake", "file://host/x", "--workdir", str(workdir)])
    assert result.exit_code == 2, result.output
    assert "names host 'host'; use file:///absolute/path" in " ".join(result.output.split())
    assert not workdir.exists()
