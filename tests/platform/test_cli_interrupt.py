"""Ctrl-C during a `qframe backtest` on a local Dask cluster prints one line, not the workers' tracebacks
(issue 15 item 8). The whole process group gets SIGINT, as a terminal sends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qframe.research.data_lake.synthetic import generate_market_data

from tools.services._process import descendants

pytestmark = pytest.mark.services

QFRAME = Path(sys.executable).with_name("qframe")


def _workers_running(pid: int) -> bool:
    def cmdline(child: int) -> str:
        try:
            return Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            return ""

    return sum(" spec " in cmdline(child) for child in descendants(pid)) >= 2


def test_ctrl_c_on_a_dask_sweep_is_one_line_and_exit_130(tmp_path: Path) -> None:
    bars = tmp_path / "bars.parquet"
    generate_market_data(["AAA", "BBB"], periods=80_000, freq="1h", seed=3).to_parquet(bars)
    grid = ["-g", "lookback_short=2:40:1", "-g", "lookback_long=41:300:5", "-g", "z_entry_base=0.5:3:0.25"]
    args = [str(QFRAME), "-q", "backtest", "-s", "adaptive_mean_reversion", *grid, "--file", str(bars)]
    args += ["--backend", "dask", "--workers", "2", "--no-track", "--no-checkpoint", "--out", str(tmp_path / "out")]
    args += ["--workdir", str(tmp_path / "w")]
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - a test-only child
    )
    try:
        deadline = time.monotonic() + 120
        while not _workers_running(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the Dask workers did not start"
            time.sleep(0.2)
        time.sleep(3)  # the sweep is running on them
        assert process.poll() is None, "the sweep ended before it could be interrupted; make it longer"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    one_line = "error: interrupted; finished work is kept (rerun the same command to resume)"
    assert stderr.splitlines() == [one_line], stderr
