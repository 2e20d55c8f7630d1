"""An interrupted sweep driver (a real subprocess, SIGKILL or Ctrl-C) resumes from its lake checkpoints.

Proof that finished tasks are not recomputed comes from outside the engine: the probe log written by the
evaluator in the driver process, and the checkpoint files' modification times, which a rewrite would change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from qframe.research.backtesting.engine import DistributedBacktestEngine

from tests.harness.engine_probe import PROBE_DELAY_ENV, PROBE_DIR_ENV, read_evaluations
from tests.harness.engine_workload import GRIDS, STRATEGIES, workload_bars

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
BLOCK_SIZE = 4


def _checkpoints(lake: Path) -> dict[str, int]:
    """task id -> mtime (ns) of every committed checkpoint (atomic-write temporaries start with a dot)."""
    return {path.stem: path.stat().st_mtime_ns for path in lake.glob("checkpoints/*/[!.]*.parquet")}


def _driver(lake: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.harness.engine_resume_driver",
        "--lake",
        str(lake),
        "--out",
        str(out),
        "--block-size",
        str(BLOCK_SIZE),
    ]


@pytest.mark.parametrize("interrupt", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_interrupted_sweep_resumes_without_recomputing_finished_tasks(
    tmp_path: Path, interrupt: signal.Signals
) -> None:
    lake, probe, out = tmp_path / "lake", tmp_path / "probe", tmp_path / "results.parquet"
    probe.mkdir()
    env = {**os.environ, PROBE_DIR_ENV: str(probe), PROBE_DELAY_ENV: "0.3"}

    first = subprocess.Popen(
        _driver(lake, out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while len(_checkpoints(lake)) < 3:
            if first.poll() is not None:
                raise AssertionError(f"driver ended before being interrupted:\n{first.communicate()[1][-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("no three checkpoints within 180 s")
            time.sleep(0.02)
        first.send_signal(interrupt)
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode != 0, "the driver was interrupted, it must not report success"
    if interrupt == signal.SIGINT:
        assert "KeyboardInterrupt" in stderr
    assert not out.exists()

    finished = _checkpoints(lake)
    before = read_evaluations(probe)
    (probe / "evaluations.log").rename(probe / "first-run.log")

    second = subprocess.run(
        _driver(lake, out), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    stats = json.loads(second.stdout.strip().splitlines()[-1])
    rerun = [task_id for task_id, _ in read_evaluations(probe)]

    all_tasks = set(_checkpoints(lake))
    assert stats["n_tasks"] == len(all_tasks)
    assert 3 <= len(finished) < len(all_tasks), "the interruption must fall between first and last task"
    # Every finished task came from the checkpoint; only the rest ran, each exactly once.
    assert not set(rerun) & set(finished)
    assert sorted(rerun) == sorted(all_tasks - set(finished))
    assert (stats["n_resumed"], stats["n_computed"]) == (len(finished), len(all_tasks) - len(finished))
    assert {task: _checkpoints(lake)[task] for task in finished} == finished, "a checkpoint was rewritten"
    # The first run did evaluate what it checkpointed (possibly one more, cut off before its checkpoint).
    assert set(finished) <= {task_id for task_id, _ in before}

    with DistributedBacktestEngine("sequential", block_size=BLOCK_SIZE, progress=False) as engine:
        uninterrupted = engine.run_backtest_sync(STRATEGIES, workload_bars(), GRIDS)
    assert stats["sweep_id"] == uninterrupted.sweep_id
    pd.testing.assert_frame_equal(pd.read_parquet(out), uninterrupted.frame, check_exact=True)
