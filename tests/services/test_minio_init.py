"""charts/minio/files/init-minio.py against a real MinIO server: run twice, prove isolation.

The server is the pinned build from `tools/install minio` (.tools/bin/minio), started by
tools.services on 127.0.0.1 with a free port and a temporary data directory, and stopped afterwards
(a server that cannot start fails the module with its log tail). The script needs
boto3 and the `minio` package (MinioAdmin) in the test venv.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.harness import charts
from tools import services
from tools.services._net import LOOPBACK, free_port, http_get
from tools.services._process import ServiceProcess, child_env, stopped_on_exit
from tools.services.minio import MINIO_BINARY

pytestmark = pytest.mark.services

SCRIPT = charts.REPO_ROOT / "charts" / "minio" / "files" / "init-minio.py"
LAKE, ARTIFACTS = "qframe-data-lake", "qframe-mlflow-artifacts"


@dataclass(frozen=True)
class MinioServer:
    endpoint: str
    root_user: str
    root_password: str


@pytest.fixture(scope="module")
def minio_server() -> Iterator[MinioServer]:
    # A server of its own, not the session's `minio`: the script creates buckets and users that the
    # lake tests sharing that server must not see.
    with services.minio_server() as minio:
        yield MinioServer(minio.endpoint_url, minio.access_key_id, minio.secret_access_key)


def client(server: MinioServer, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def run_script(server: MinioServer, config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--endpoint", server.endpoint, "--root-user", server.root_user),
            *("--config-json", str(config), "--wait-seconds", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environ, "MINIO_ROOT_PASSWORD": server.root_password, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


def denied(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"]) in ("AccessDenied", "403")
    return False


def test_init_script_creates_versioned_buckets_and_isolated_keys_idempotently(
    minio_server: MinioServer, tmp_path: Path
) -> None:
    keys = {name: (f"{name}-qframe", secrets.token_hex(20)) for name in ("mlflow", "research")}
    environ = {
        "CONSUMER_ACCESS_KEY_MLFLOW": keys["mlflow"][0],
        "CONSUMER_SECRET_KEY_MLFLOW": keys["mlflow"][1],
    }
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "buckets": [LAKE, ARTIFACTS],
                "versioning": True,
                "consumers": [
                    {
                        "name": "mlflow",
                        "buckets": [ARTIFACTS],
                        "access": "readwrite",
                        "accessKeyEnv": "CONSUMER_ACCESS_KEY_MLFLOW",
                        "secretKeyEnv": "CONSUMER_SECRET_KEY_MLFLOW",
                    },
                    {
                        "name": "research",
                        "buckets": [LAKE],
                        "access": "readwrite",
                        "accessKey": keys["research"][0],
                        "secretKey": keys["research"][1],
                    },
                ],
            }
        ),
        encoding="utf-8",
    )

    first = run_script(minio_server, config, environ)
    assert first.returncode == 0, first.stderr
    assert "bucket qframe-data-lake: created" in first.stdout
    for _name, (_access, secret) in keys.items():
        assert secret not in first.stdout + first.stderr

    root = client(minio_server, minio_server.root_user, minio_server.root_password)
    for bucket in (LAKE, ARTIFACTS):
        assert root.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    own = {"mlflow": ARTIFACTS, "research": LAKE}
    for name, (access, secret) in keys.items():
        s3 = client(minio_server, access, secret)
        mine, other = own[name], ({LAKE, ARTIFACTS} - {own[name]}).pop()
        s3.put_object(Bucket=mine, Key=f"{name}/hello.txt", Body=b"hi")
        assert s3.get_object(Bucket=mine, Key=f"{name}/hello.txt")["Body"].read() == b"hi"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=mine, Prefix=name).get("Contents", [])] == [
            f"{name}/hello.txt"
        ]
        s3.delete_object(Bucket=mine, Key=f"{name}/hello.txt")
        assert denied(s3.put_object, Bucket=other, Key="x.txt", Body=b"no")
        assert denied(s3.list_objects_v2, Bucket=other)
        assert denied(s3.create_bucket, Bucket=f"{name}-rogue")
        assert denied(s3.put_bucket_versioning, Bucket=mine, VersioningConfiguration={"Status": "Suspended"})

    second = run_script(minio_server, config, environ)
    assert second.returncode == 0, second.stderr
    assert "0 change(s)" in second.stdout, second.stdout

    # A new secret key in the consumer's Secret is applied on the next run; nothing else changes.
    rotated = secrets.token_hex(20)
    third = run_script(minio_server, config, {**environ, "CONSUMER_SECRET_KEY_MLFLOW": rotated})
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines()[:-1] == ["consumer mlflow: secret key updated"]
    client(minio_server, keys["mlflow"][0], rotated).head_bucket(Bucket=ARTIFACTS)


def test_init_script_rejects_a_consumer_bucket_outside_the_list(minio_server: MinioServer, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "buckets": [LAKE],
                "consumers": [{"name": "x", "buckets": ["other"], "accessKey": "x-key", "secretKey": "s" * 20}],
            }
        ),
        encoding="utf-8",
    )
    proc = run_script(minio_server, config, {})
    assert proc.returncode == 2
    assert "platform buckets" in proc.stderr


def test_root_and_consumer_credentials_can_all_come_from_files(minio_server: MinioServer, tmp_path: Path) -> None:
    # As in the chart's Job: *_FILE for the root pair, accessKeyFile/secretKeyFile per consumer,
    # and no credential in the environment at all.
    files = {
        "root-user": minio_server.root_user,
        "root-password": minio_server.root_password,
        "access-key": "filed-qframe",
        "secret-key": secrets.token_hex(20),
    }
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    config = tmp_path / "config.json"
    consumer = {
        "name": "filed",
        "buckets": [LAKE],
        "access": "readonly",
        "accessKeyFile": str(tmp_path / "access-key"),
        "secretKeyFile": str(tmp_path / "secret-key"),
    }
    config.write_text(json.dumps({"buckets": [LAKE], "versioning": True, "consumers": [consumer]}), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--endpoint", minio_server.endpoint, "--config-json", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "MINIO_ROOT_USER_FILE": str(tmp_path / "root-user"),
            "MINIO_ROOT_PASSWORD_FILE": str(tmp_path / "root-password"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert files["secret-key"] not in proc.stdout + proc.stderr
    assert minio_server.root_password not in proc.stdout + proc.stderr
    s3 = client(minio_server, files["access-key"], files["secret-key"])
    s3.head_bucket(Bucket=LAKE)
    assert denied(s3.put_object, Bucket=LAKE, Key="x.txt", Body=b"readonly")


def test_the_server_takes_its_root_credentials_from_files_as_in_the_chart(tmp_path: Path) -> None:
    # The chart's StatefulSet sets only MINIO_ROOT_USER_FILE / MINIO_ROOT_PASSWORD_FILE (paths into
    # the mounted Secret): the pinned binary must read them, and must not fall back to its built-in
    # default credentials.
    root_user, root_password = "filed-root", secrets.token_hex(16)
    (tmp_path / "root-user").write_text(root_user + "\n", encoding="utf-8")
    (tmp_path / "root-password").write_text(root_password + "\n", encoding="utf-8")
    (tmp_path / "data").mkdir()
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    env = child_env(
        {
            "HOME": str(tmp_path),
            "MINIO_ROOT_USER_FILE": str(tmp_path / "root-user"),
            "MINIO_ROOT_PASSWORD_FILE": str(tmp_path / "root-password"),
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        },
        drop=("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
    )
    command = [str(MINIO_BINARY), "server", str(tmp_path / "data"), "--address", f"{LOOPBACK}:{port}"]
    process = ServiceProcess(
        "MinIO server (file credentials)",
        command,
        tmp_path / "minio.log",
        fix="tools/install minio",
        cwd=tmp_path,
        env=env,
    )
    with stopped_on_exit(process):
        process.wait_ready(
            lambda: http_get(f"{endpoint}/minio/health/ready")[0] == 200, timeout_s=60, what="GET /minio/health/ready"
        )
        server = MinioServer(endpoint, root_user, root_password)
        client(server, root_user, root_password).create_bucket(Bucket="filed")
        with pytest.raises(ClientError) as refused:
            client(server, "minioadmin", "minioadmin").list_objects_v2(Bucket="filed")
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
