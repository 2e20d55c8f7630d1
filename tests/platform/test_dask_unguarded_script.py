"""A script without an ``if __name__ == "__main__":`` guard runs once, not once per local Dask worker.

Run as a real script in a subprocess (its own ``__main__``), on a real local Dask cluster of 2 workers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

SCRIPT = """
import os
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.data_lake.synthetic import generate_market_data

print(f"SCRIPT BODY pid={os.getpid()}", flush=True)
bars = generate_market_data(["AAA"], periods=400, freq="1h", seed=1)
with DistributedBacktestEngine("dask", max_workers=2, progress=False) as engine:
    results = engine.run_backtest_sync(["ma_crossover"], [bars], {"ma_crossover": {"fast": [5, 10], "slow": [50]}})
    print(f"WORKERS {engine.compute.n_workers}", flush=True)
print(f"ROWS {len(results.frame)} on {results.backend}", flush=True)
"""


def test_a_script_without_main_guard_is_not_re_run_by_the_dask_workers(tmp_path: Path) -> None:
    script = tmp_path / "research_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    lines = done.stdout.splitlines()
    bodies = [line for line in lines if line.startswith("SCRIPT BODY")]
    assert len(bodies) == 1, f"the script body ran {len(bodies)} times:\n{done.stdout}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WORKERS 2" in lines
    assert "ROWS 2 on dask" in lines
    assert "bootstrapping phase" not in done.stderr
