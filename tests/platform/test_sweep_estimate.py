"""Before a sweep starts, `qframe backtest` says what it will run and cost, and asks when it is long; checkpoints
can be listed and cleaned (`qframe sweeps list|clean`); a resume shows its checkpoint loading (issue 15 item 10)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.cli import app
from qframe.research.data_lake.storage import MemoryStorage
from qframe.research.data_lake.synthetic import generate_market_data
from rich.console import Console
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

# 39 x 3 = 117 combinations: two blocks of 64, so tasks = 2 blocks x 2 splits x 2 symbols = 8.
GRID = ["-g", "fast=2:40:1", "-g", "slow=50,60,70"]
SWEEP = ["backtest", "-s", "ma_crossover", *GRID, "--splits", "2", "--backend", "sequential", "--no-track"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    yield CliRunner()
    structlog.reset_defaults()


@pytest.fixture
def bars_file(tmp_path: Path) -> Path:
    path = tmp_path / "bars.parquet"
    generate_market_data(["AAA", "BBB"], periods=700, freq="1h", seed=5).to_parquet(path)
    return path


def _text(output: str) -> str:
    return " ".join(output.split())


def _sweep(runner: CliRunner, bars_file: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    where = ["--file", str(bars_file), "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w")]
    result = runner.invoke(app, [*SWEEP, *where, *extra])
    return result.exit_code, _text(result.output)


def test_the_estimate_before_the_sweep_counts_the_tasks_the_engine_runs(
    runner: CliRunner, bars_file: Path, tmp_path: Path
) -> None:
    code, text = _sweep(runner, bars_file, tmp_path, "--no-checkpoint")
    assert code == 0, text
    announced = re.search(
        r"tasks ([\d,]+) \(ma_crossover: 117 combinations -> 2 blocks; each x 2 splits x 2 datasets\)", text
    )
    assert announced is not None, text
    ran = pd.read_parquet(tmp_path / "out" / "results.parquet")["task_id"].nunique()
    assert int(announced.group(1).replace(",", "")) == ran == 8
    assert re.search(
        r"estimate (~\d+|under 1) s on 1 worker: [\d,]+ bar evaluations at [\d,]+/s per worker, timed on this data",
        text,
    )
    assert re.search(r"memory ~[\d.]+ \w+ peak: results", text)
    # The estimate comes before the work: it is printed ahead of the summary table.
    assert text.index("estimate ") < text.index("rows on sequential")


def test_quiet_prints_the_estimate_only_when_it_stops_the_sweep(
    runner: CliRunner, bars_file: Path, tmp_path: Path
) -> None:
    where = ["--file", str(bars_file), "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w")]
    quiet = runner.invoke(app, ["-q", *SWEEP, *where, "--no-checkpoint"])
    assert quiet.exit_code == 0, quiet.output
    assert "estimate " not in _text(quiet.output)
    refused = runner.invoke(app, ["-q", *SWEEP, *where, "--no-checkpoint", "--ask-above-minutes", "0"])
    assert refused.exit_code == 2, refused.output
    assert "estimate " in _text(refused.output)
    assert "pass --yes" in _text(refused.output)


def test_a_sweep_above_the_threshold_needs_yes_off_a_terminal(
    runner: CliRunner, bars_file: Path, tmp_path: Path
) -> None:
    code, text = _sweep(runner, bars_file, tmp_path, "--no-checkpoint", "--ask-above-minutes", "0")
    assert code == 2, text
    assert "sweep not started: estimated " in text
    assert "above --ask-above-minutes 0; pass --yes to start it" in text
    assert not (tmp_path / "out").exists()

    code, text = _sweep(runner, bars_file, tmp_path, "--no-checkpoint", "--ask-above-minutes", "0", "--yes")
    assert code == 0, text
    assert (tmp_path / "out" / "results.parquet").is_file()


def _checkpoint_files(tmp_path: Path) -> dict[Path, int]:
    return {
        path: path.stat().st_size for path in (tmp_path / "w" / "lake" / "checkpoints").rglob("*") if path.is_file()
    }


def test_sweeps_list_and_clean_work_on_a_real_sweeps_checkpoints(
    runner: CliRunner, bars_file: Path, tmp_path: Path
) -> None:
    code, text = _sweep(runner, bars_file, tmp_path)
    assert code == 0, text
    files = _checkpoint_files(tmp_path)
    workdir = ["--workdir", str(tmp_path / "w")]

    listed = runner.invoke(app, ["sweeps", "list", "--output", "json", *workdir])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)
    assert (entry["tasks_done"], entry["tasks_total"]) == (8, 8)
    assert entry["strategies"] == ["ma_crossover"]
    assert entry["datasets"] == ["AAA", "BBB"]
    assert entry["size_bytes"] == sum(files.values())
    assert pd.Timestamp(entry["modified"]) > pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)
    table = runner.invoke(app, ["sweeps", "list", *workdir])
    assert entry["sweep_id"] in table.output
    assert "8/8" in table.output

    dry = runner.invoke(app, ["sweeps", "clean", "--all", "--dry-run", *workdir])
    assert dry.exit_code == 0, dry.output
    assert f"would delete {entry['sweep_id']}" in _text(dry.output)
    assert "would free" in dry.output
    assert _checkpoint_files(tmp_path) == files, "a dry run deleted something"

    recent = runner.invoke(app, ["sweeps", "clean", "--older-than", "1d", *workdir])
    assert recent.exit_code == 0, recent.output
    assert "freed 0 B (0 of 1" in _text(recent.output)
    assert _checkpoint_files(tmp_path) == files

    typo = runner.invoke(app, ["sweeps", "clean", entry["sweep_id"][:-1], *workdir])
    assert typo.exit_code == 2
    assert "did you mean" in _text(typo.output)

    cleaned = runner.invoke(app, ["sweeps", "clean", entry["sweep_id"], *workdir])
    assert cleaned.exit_code == 0, cleaned.output
    assert f"deleted {entry['sweep_id']}" in _text(cleaned.output)
    assert not _checkpoint_files(tmp_path)
    assert json.loads(runner.invoke(app, ["sweeps", "list", "--output", "json", *workdir]).output) == []


def test_a_resume_shows_its_checkpoint_loading_on_a_terminal_only() -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=700, freq="1h", seed=5)
    storage = MemoryStorage()
    grid = {"ma_crossover": {"fast": list(range(2, 41)), "slow": [50, 60, 70]}}

    def run(console: Console) -> None:
        with DistributedBacktestEngine(
            "sequential", checkpoint_storage=storage, progress=True, progress_console=console
        ) as engine:
            engine.run_backtest_sync(["ma_crossover"], [bars], grid, n_splits=2)

    run(Console(file=io.StringIO()))
    terminal = io.StringIO()
    run(Console(file=terminal, force_terminal=True, width=160))
    shown = terminal.getvalue()
    assert "loading 8 checkpoints of sweep-" in shown
    assert "8/8" in shown
    piped = io.StringIO()
    run(Console(file=piped))
    assert "loading" not in piped.getvalue()


@pytest.mark.parametrize(("answer", "code"), [(b"n\n", 1), (b"y\n", 0)], ids=["no", "yes"])
def test_on_a_terminal_a_long_sweep_asks_and_starts_only_on_yes(
    bars_file: Path, tmp_path: Path, answer: bytes, code: int
) -> None:
    qframe = Path(sys.executable).with_name("qframe")
    where = ["--file", str(bars_file), "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QFRAME_", "MLFLOW_"))}
    terminal, stdin = pty.openpty()  # a real terminal on stdin, as a researcher's shell gives
    try:
        # The answer waits in the terminal's input buffer until the prompt reads it.
        os.write(terminal, answer)
        run = subprocess.run(
            [str(qframe), *SWEEP, *where, "--no-checkpoint", "--ask-above-minutes", "0"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )
    finally:
        os.close(stdin)
        os.close(terminal)
    assert run.returncode == code, run.stderr[-2000:]
    assert "Start it?" in run.stderr
    assert (tmp_path / "out" / "results.parquet").is_file() == (code == 0)
    if code:
        assert "sweep not started (answered no)" in _text(run.stderr)
