"""moto's S3-compatible API server on 127.0.0.1, as its own process.

Its state is isolated from in-process moto mocks; any key pair is accepted, so the one handed out
is fixed.
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
from tools.services._s3_api import S3Endpoint

S3_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Service(S3Endpoint):
    pid: int
    started_in_s: float


@contextmanager
def s3_server(
    *,
    python: str | None = None,
    region: str = "us-east-1",
    startup_timeout_s: float = S3_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[S3Service]:
    """moto's S3-compatible API server as its own process (state is isolated from in-process moto mocks)."""
    service = "S3 API (moto server)"
    python_bin = python if python is not None else sys.executable
    fix = "install the dev dependencies (moto[server]) with tools/install venv"
    started = time.monotonic()
    with service_workdir("s3", workdir_parent) as workdir:
        port = free_port()
        process = ServiceProcess(
            service,
            [python_bin, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            workdir / "moto.log",
            fix=fix,
            cwd=workdir,
            env=child_env({"PYTHONUNBUFFERED": "1"}),
        )
        with stopped_on_exit(process):
            endpoint = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, body = http_get(f"{endpoint}/")
                return status == 200 and "ListAllMyBucketsResult" in body

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="S3 ListBuckets (GET /)")
            yield S3Service(
                host=LOOPBACK,
                port=port,
                endpoint_url=endpoint,
                region=region,
                access_key_id="qframe-test-key",
                secret_access_key="qframe-test-secret",  # noqa: S106 - moto accepts any key pair
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )
