"""An MLflow tracking server on 127.0.0.1: sqlite backend, artifacts proxied to a temp dir.

It runs from this venv's ``mlflow`` with one uvicorn worker and no job runner.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.services._net import LOOPBACK, free_port, http_get
from tools.services._process import ServiceProcess, child_env, service_workdir, stopped_on_exit

# Generous: a loaded 2-core machine needs 20-40 s to start the server.
MLFLOW_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class MlflowService:
    host: str
    port: int
    tracking_uri: str
    backend_store_uri: str
    artifacts_dir: Path
    pid: int
    started_in_s: float


@contextmanager
def mlflow_server(
    *,
    python: str | None = None,
    startup_timeout_s: float = MLFLOW_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[MlflowService]:
    """``mlflow server`` with a sqlite backend and artifacts proxied to a dir, one uvicorn worker."""
    service = "MLflow tracking server"
    python_bin = python if python is not None else sys.executable
    fix = "install the dev dependencies (mlflow) with tools/install venv; read the log above"
    started = time.monotonic()
    with service_workdir("mlflow", workdir_parent) as workdir:
        port = free_port()
        artifacts_dir = workdir / "artifacts"
        artifacts_dir.mkdir()
        backend_store_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        command = [
            python_bin,
            "-m",
            "mlflow",
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts_dir),
            "--allowed-hosts",
            f"{LOOPBACK}:{port},localhost:{port}",
        ]
        env = child_env(
            {
                "PYTHONUNBUFFERED": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                # The job runner (huey consumer) is another process and a dir in /dev/shm; not needed.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            drop=("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"),
        )
        process = ServiceProcess(service, command, workdir / "mlflow.log", fix=fix, cwd=workdir, env=env)
        with stopped_on_exit(process):
            tracking_uri = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, body = http_get(f"{tracking_uri}/health")
                return status == 200 and body.strip() == "OK"

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="GET /health == OK")
            yield MlflowService(
                host=LOOPBACK,
                port=port,
                tracking_uri=tracking_uri,
                backend_store_uri=backend_store_uri,
                artifacts_dir=artifacts_dir,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )
