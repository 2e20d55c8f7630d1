"""Instrumented evaluators for engine tests: the real ``evaluate_task`` plus a trace of where/when it ran.

Workers (Dask, Ray, a driver subprocess) import this module by name, so everything is configured through
environment variables read at call time, not through state captured in the test process:

- ``QFRAME_PROBE_DIR``: each evaluation appends ``<task_id> <pid>`` as a line to ``<dir>/evaluations.log``
  before evaluating (O_APPEND writes of one short line are atomic across processes).
- ``QFRAME_PROBE_DELAY_S``: seconds to sleep before evaluating, so a test can act while tasks run.
- ``QFRAME_PROBE_GATE``: a file path; evaluations wait (after logging) until it exists, so a test knows
  for certain which tasks are in flight when it kills a worker, whatever the machine load.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from qframe.research.backtesting.types import BacktestTask, MarketData

PROBE_DIR_ENV = "QFRAME_PROBE_DIR"
PROBE_DELAY_ENV = "QFRAME_PROBE_DELAY_S"
PROBE_GATE_ENV = "QFRAME_PROBE_GATE"
GATE_TIMEOUT_S = 300.0
LOG_NAME = "evaluations.log"


def probed_evaluate(task: BacktestTask, data: MarketData) -> pd.DataFrame:
    from qframe.research.backtesting.evaluate import evaluate_task  # noqa: PLC0415 - resolved on the worker

    probe_dir = os.environ.get(PROBE_DIR_ENV)
    if probe_dir:
        with Path(probe_dir, LOG_NAME).open("a", encoding="utf-8") as log:
            log.write(f"{task.task_id} {os.getpid()}\n")
    gate = os.environ.get(PROBE_GATE_ENV)
    if gate:
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    delay = float(os.environ.get(PROBE_DELAY_ENV, "0") or 0)
    if delay > 0:
        time.sleep(delay)
    return evaluate_task(task, data)


def read_evaluations(probe_dir: Path) -> list[tuple[str, int]]:
    """(task_id, pid) of every evaluation started so far, in start order."""
    path = probe_dir / LOG_NAME
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        task_id, pid = line.split()
        entries.append((task_id, int(pid)))
    return entries
