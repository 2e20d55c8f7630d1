"""A sweep driver run as a subprocess by the resume test, so the test can interrupt it for real.

    python -m tests.harness.engine_resume_driver --lake DIR --out results.parquet [--backend sequential]

Checkpoints go to a LocalFileStorage lake at DIR; evaluations are traced by ``engine_probe`` (see its
environment variables). On success the results frame is written to --out (via a temporary file and a
rename, so a killed run never leaves a partial file) and one JSON line with the run's counts is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.data_lake.storage import LocalFileStorage

from tests.harness.engine_probe import probed_evaluate
from tests.harness.engine_workload import GRIDS, STRATEGIES, workload_bars


def main() -> None:
    # A process started in the background (nohup, `cmd &` in a script, some CI runners) inherits SIGINT
    # as ignored, and Python then installs no KeyboardInterrupt handler; the test's Ctrl-C must land.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backend", default="sequential")
    parser.add_argument("--block-size", type=int, default=4)
    args = parser.parse_args()

    with DistributedBacktestEngine(
        args.backend,
        max_workers=2,
        block_size=args.block_size,
        checkpoint_storage=LocalFileStorage(args.lake),
        progress=False,
        evaluator=probed_evaluate,
    ) as engine:
        results = engine.run_backtest_sync(STRATEGIES, workload_bars(), GRIDS)
    partial = args.out.with_suffix(".partial")
    results.frame.to_parquet(partial, index=False)
    os.replace(partial, args.out)
    print(
        json.dumps(
            {
                "sweep_id": results.sweep_id,
                "n_tasks": results.n_tasks,
                "n_computed": results.n_computed,
                "n_resumed": results.n_resumed,
                "backend": results.backend,
            }
        )
    )


if __name__ == "__main__":
    main()
