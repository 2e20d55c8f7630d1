"""The pinned MinIO server on 127.0.0.1 with a temp data dir and a random root password.

The binary comes from ``.tools/bin/minio`` (``tools/install minio`` builds it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tools.paths import TOOLS_BIN
from tools.services._net import LOOPBACK, free_port, http_get
from tools.services._process import ServiceProcess, child_env, service_workdir, stopped_on_exit
from tools.services._s3_api import S3Endpoint
from tools.services.errors import ServiceStartError

MINIO_BINARY = TOOLS_BIN / "minio"
MINIO_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class MinioService(S3Endpoint):
    """A real MinIO server; the root user is the only account (callers create their buckets)."""

    data_dir: Path
    pid: int
    started_in_s: float


@contextmanager
def minio_server(
    *,
    binary: Path | None = None,
    region: str = "us-east-1",
    startup_timeout_s: float = MINIO_TIMEOUT_S,
    workdir_parent: Path | None = None,
) -> Iterator[MinioService]:
    """The pinned MinIO build (``tools/install minio``) on a free loopback port with a temp data dir."""
    service = "MinIO server"
    minio = binary if binary is not None else MINIO_BINARY
    fix = "build it with `tools/install minio` (cached in ~/.cache/qframe-tools)"
    if not minio.exists():
        raise ServiceStartError(service, f"no binary at {minio}", fix=fix)
    started = time.monotonic()
    with service_workdir("minio", workdir_parent) as workdir:
        port, console_port = free_port(), free_port()
        data_dir = workdir / "data"
        data_dir.mkdir()
        root_user, root_password = "qframe-root", secrets.token_hex(16)
        command = [
            str(minio),
            "server",
            str(data_dir),
            "--address",
            f"{LOOPBACK}:{port}",
            "--console-address",
            f"{LOOPBACK}:{console_port}",
        ]
        env = child_env(
            {
                "HOME": str(workdir),
                "MINIO_ROOT_USER": root_user,
                "MINIO_ROOT_PASSWORD": root_password,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
                "MINIO_REGION": region,
            }
        )
        process = ServiceProcess(service, command, workdir / "minio.log", fix=fix, cwd=workdir, env=env)
        with stopped_on_exit(process):
            endpoint = f"http://{LOOPBACK}:{port}"

            def answers() -> bool:
                status, _ = http_get(f"{endpoint}/minio/health/ready")
                return status == 200

            process.wait_ready(answers, timeout_s=startup_timeout_s, what="GET /minio/health/ready")
            yield MinioService(
                host=LOOPBACK,
                port=port,
                endpoint_url=endpoint,
                region=region,
                access_key_id=root_user,
                secret_access_key=root_password,
                data_dir=data_dir,
                pid=process.pid,
                started_in_s=round(time.monotonic() - started, 2),
            )
