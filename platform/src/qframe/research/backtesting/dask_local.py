"""A local Dask cluster whose workers never re-run the user's script.

``LocalCluster`` starts worker processes with multiprocessing's spawn (or forkserver), which re-imports the
parent's ``__main__`` in every worker: a script without an ``if __name__ == "__main__":`` guard then runs
its whole body again per worker (loading data, printing, starting clusters of its own) and fails in the
"bootstrapping phase" check. Here each worker is a fresh interpreter started as ``python -m dask spec``:
its main module is Dask's own, so the user's script is never imported. The scheduler stays in this
process; each worker keeps a nanny that restarts it if it dies. Workers get the driver's ``sys.path``
(through PYTHONPATH) so functions defined in importable modules unpickle there as under spawn.

Imported only when a local Dask backend starts (it needs ``distributed``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from distributed import Scheduler, SpecCluster
from distributed.deploy.subprocess import SubprocessWorker


class ScriptSafeWorker(SubprocessWorker):
    """A nanny + worker in a fresh ``python -m dask spec`` process that sees the driver's sys.path."""

    async def _start(self) -> None:
        spec = json.dumps({"cls": self.worker_class, "opts": {**self.worker_kwargs}})
        path = os.pathsep.join(entry for entry in sys.path if entry)
        env = {**os.environ, "PYTHONPATH": path}
        # Own session: a terminal's Ctrl-C reaches the driver only, which reports it in one line and stops the
        # workers itself, instead of every worker printing a KeyboardInterrupt traceback mid-import.
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dask", "spec", self.scheduler, "--spec", spec, env=env, start_new_session=True
        )


def local_cluster(n_workers: int, *, silence_logs: int = 40) -> Any:
    """``n_workers`` single-threaded workers and an in-process scheduler, all on 127.0.0.1, no dashboards."""
    worker = {
        "cls": ScriptSafeWorker,
        "options": {
            "worker_class": "distributed.Nanny",
            "worker_kwargs": {"host": "127.0.0.1", "nthreads": 1, "silence_logs": silence_logs, "dashboard": False},
        },
    }
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "dashboard": False}}
    return SpecCluster(  # type: ignore[no-untyped-call]
        workers=dict.fromkeys(range(n_workers), worker),
        scheduler=scheduler,
        worker=worker,
        silence_logs=silence_logs,
        name="qframe-local",
    )
