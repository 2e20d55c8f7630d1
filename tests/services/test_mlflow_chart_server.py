"""MLflow started exactly as charts/mlflow renders it, on the real PostgreSQL and the real MinIO.

The pod spec comes from `helm template` (not retyped): the init containers' and the server's
command lines and environment are taken from the render, Secret references are resolved from
Secrets this test fills with the real services' logins (as the Pulumi component's Secrets would
be), Kubernetes' $(VAR) expansion is applied, and the pod's volume mount paths are mapped to temp
dirs. Only the listen address changes: 127.0.0.1 and a free port instead of 0.0.0.0:5000.
The server runs from a venv built from the mlflow image's own hashed requirements and wheelhouse,
so its packages are the image's (the basic-auth app needs Flask-WTF, which the dev venv lacks).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from mlflow.tracking import MlflowClient
from psycopg import sql

from infra.components.jupyterhub import UserPlatform, user_environment
from infra.components.mlflow import CLIENT_ENV
from tests.harness import charts
from tools import services
from tools.images.wheels import HOUSE_REQUIREMENTS, wheelhouse
from tools.paths import REPO_ROOT
from tools.services._net import LOOPBACK, free_port
from tools.services._process import descendants

pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]

CHART = REPO_ROOT / "charts" / "mlflow"
REQUIREMENTS = REPO_ROOT / "images" / "mlflow" / "requirements.txt"
BUCKET = "svc-mlflow-artifacts"
ADMIN = "admin"
STARTUP_TIMEOUT_S = 180.0
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def image_venv() -> Path:
    """A venv with exactly the mlflow image's packages (cached by the requirements' content)."""
    house = wheelhouse(REQUIREMENTS)
    venv = Path.home() / ".cache" / "qframe-tools" / f"mlflow-image-venv-{house.name}"
    if (venv / ".complete").is_file():
        return venv
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", "--no-index", "--find-links", str(house),
         "--require-hashes", "-r", str(house / HOUSE_REQUIREMENTS)],
        check=True,
        timeout=1200,
    )  # fmt: skip
    (venv / ".complete").touch()
    return venv


@dataclass(frozen=True)
class Pod:
    init_containers: list[dict[str, Any]]
    container: dict[str, Any]
    mounts: dict[str, Path]


def rendered_pod(values: Mapping[str, Any]) -> dict[str, Any]:
    objects = charts.render_by_name(CHART, values, namespace="svc", release="mlflow")
    spec = objects["Deployment", "mlflow"]["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    spec["_configmaps"] = {k[1]: v["data"] for k, v in objects.items() if k[0] == "ConfigMap"}
    return spec


def resolve_env(container: Mapping[str, Any], secret_data: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: secretKeyRef values and $(VAR) expansion."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secret_data[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


def expand(args: list[str], env: Mapping[str, str]) -> list[str]:
    return [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def remap(text: str, mounts: Mapping[str, Path]) -> str:
    """A pod path to the temp dir standing in for its volume (longest mount path first)."""
    for mount in sorted(mounts, key=len, reverse=True):
        if text == mount or text.startswith(mount + "/"):
            return str(mounts[mount]) + text[len(mount) :]
    return text


def process_env(env: Mapping[str, str], venv: Path, mounts: Mapping[str, Path]) -> dict[str, str]:
    out = {name: remap(value, mounts) for name, value in env.items()}
    out["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    return out


@dataclass(frozen=True)
class Stores:
    secret_data: dict[str, dict[str, str]]
    s3: Any


@pytest.fixture(scope="module")
def stores(postgres: services.PostgresService, minio: services.MinioService) -> Iterator[Stores]:
    """The tracking and auth stores' databases and logins (as charts/postgres's init Job creates them), the bucket."""
    suffix = secrets.token_hex(3)
    logins = {
        "postgres-mlflow": (f"mlflow_{suffix}", secrets.token_hex(16)),
        "postgres-mlflow-auth": (f"mlflow_auth_{suffix}", secrets.token_hex(16)),
    }
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for role, password in logins.values():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(role), sql.Identifier(role)))
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(role)))
    s3 = boto3.client(
        "s3",
        endpoint_url=minio.endpoint_url,
        aws_access_key_id=minio.access_key_id,
        aws_secret_access_key=minio.secret_access_key,
        region_name="us-east-1",
    )
    # test_hub_mlflow_accounts runs this fixture in its own module against the same session MinIO:
    # the second module finds the bucket there (its assertions look only at their own run ids).
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    data: dict[str, dict[str, str]] = {
        secret: {"username": role, "password": password, "host": postgres.host, "port": str(postgres.port)}
        | {"database": role}
        for secret, (role, password) in logins.items()
    }
    data |= {
        "mlflow-auth": {"admin-password": secrets.token_hex(16), "flask-secret-key": secrets.token_hex(24)},
        "object-store-mlflow": {"access-key": minio.access_key_id, "secret-key": minio.secret_access_key},
    }
    yield Stores(secret_data=data, s3=s3)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for role, _password in logins.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@dataclass(frozen=True)
class Server:
    url: str
    admin_password: str
    command: list[str]
    started_in_s: float
    rss_kib: int
    log: Path


def _rss_kib(pid: int) -> int:
    total = 0
    for child in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text(encoding="utf-8").splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def _http(url: str, *, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - http on loopback only
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture(scope="module")
def server(stores: Stores, minio: services.MinioService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    venv = image_venv()
    work = tmp_path_factory.mktemp("mlflow-pod")
    values = {
        "artifacts": {
            "destination": f"s3://{BUCKET}",
            "s3": {"endpointUrl": minio.endpoint_url, "existingSecret": "object-store-mlflow"},
        }
    }
    spec = rendered_pod(values)
    mounts = {"/tmp": work / "tmp", "/etc/mlflow-auth": work / "auth", "/opt/qframe": work / "script"}
    for path in mounts.values():
        path.mkdir()
    # The ConfigMap volume: its keys become files, as the kubelet mounts them.
    for key, text in spec["_configmaps"]["mlflow-auth-config"].items():
        (mounts["/opt/qframe"] / key).write_text(text, encoding="utf-8")
    for init in spec["initContainers"]:
        env = resolve_env(init, stores.secret_data)
        command = [remap(a, mounts) for a in expand(init["command"], env)]
        done = subprocess.run(
            command, env=process_env(env, venv, mounts), cwd=mounts["/tmp"], capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"init container {init['name']} failed:\n{done.stdout}\n{done.stderr}"
    (main,) = spec["containers"]
    env = resolve_env(main, stores.secret_data)
    command = [remap(a, mounts) for a in expand(main["command"], env)]
    port = free_port()
    command[command.index("--host") + 1] = LOOPBACK
    command[command.index("--port") + 1] = str(port)
    log = (work / "mlflow.log").open("w", encoding="utf-8")
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=process_env(env, venv, mounts), cwd=mounts["/tmp"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        while _http(f"{url}/health") != 200:
            if process.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"mlflow server did not answer /health:\n{(work / 'mlflow.log').read_text()[-6000:]}")
            time.sleep(0.5)
        yield Server(
            url=url,
            admin_password=stores.secret_data["mlflow-auth"]["admin-password"],
            command=command,
            started_in_s=round(time.monotonic() - started, 1),
            rss_kib=_rss_kib(process.pid),
            log=work / "mlflow.log",
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_unauthenticated_requests_are_refused(server: Server) -> None:
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _http(search) == 401
    assert _http(search, auth=(ADMIN, "wrong")) == 401
    assert _http(search, auth=(ADMIN, server.admin_password)) == 200


CLIENT_SCRIPT = r"""
import json, os, sys, tempfile
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("svc-chart-check")
with mlflow.start_run() as run:
    for step in range(3):
        mlflow.log_metric("sharpe", 0.5 + step / 10, step=step)
    mlflow.log_param("lookback", 20)
    path = os.path.join(tempfile.mkdtemp(), "weights.json")
    with open(path, "w") as handle:
        json.dump({"w": [0.1, 0.9]}, handle)
    mlflow.log_artifact(path)
client = MlflowClient()
client.create_registered_model("svc-momentum")
version = client.create_model_version("svc-momentum", f"runs:/{run.info.run_id}/weights.json", run.info.run_id)
artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.json")
print(json.dumps({
    "run_id": run.info.run_id,
    "artifact_uri": run.info.artifact_uri,
    "metrics": client.get_run(run.info.run_id).data.metrics,
    "artifacts": artifacts,
    "downloaded": json.load(open(local)),
    "version": version.version,
    "versions": [v.version for v in client.search_model_versions("name='svc-momentum'")],
}))
"""


def test_a_client_logs_a_run_with_an_artifact_through_the_server_and_registers_a_model(
    server: Server, stores: Stores
) -> None:
    # The client holds MLflow credentials only: no bucket key, no endpoint of the store.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": server.admin_password,
        **CLIENT_ENV,
    }
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["artifact_uri"].startswith("mlflow-artifacts:/"), "artifacts must be proxied by the server"
    assert result["metrics"] == {"sharpe": pytest.approx(0.7)}
    assert result["artifacts"] == ["weights.json"]
    assert result["downloaded"] == {"w": [0.1, 0.9]}
    assert result["version"] == "1"
    assert result["versions"] == ["1"]
    # Both transfers went through the server, none by a presigned URL to the store.
    log = server.log.read_text(encoding="utf-8")
    assert f'{result["run_id"]}/artifacts/weights.json HTTP/1.1" 200' in log
    assert "/mlflow-artifacts/presigned/" not in log
    # The artifact really is in the bucket, written with the server's key.
    keys = [o["Key"] for o in stores.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.endswith(f"{result['run_id']}/artifacts/weights.json") for k in keys), keys


def _tables(login: Mapping[str, str]) -> list[tuple[str, str]]:
    with psycopg.connect(
        host=login["host"], port=int(login["port"]), user=login["username"], password=login["password"],
        dbname=login["database"],
    ) as conn:  # fmt: skip
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name IN ('users', 'alembic_version_auth', 'alembic_version', 'experiments')"
        ).fetchall()
    return sorted((str(a), str(b)) for a, b in rows)


def test_auth_tables_live_in_their_own_database(stores: Stores, server: Server) -> None:
    """The basic-auth app's users and permissions are in the mlflow-auth consumer's database, not the tracking one."""
    assert _tables(stores.secret_data["postgres-mlflow"]) == [("public", "alembic_version"), ("public", "experiments")]
    auth = stores.secret_data["postgres-mlflow-auth"]
    assert _tables(auth) == [("public", "alembic_version_auth"), ("public", "users")]
    # Neither login can open the other's database (PUBLIC has no CONNECT, as the postgres chart does it).
    tracking = stores.secret_data["postgres-mlflow"]
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            host=auth["host"], port=int(auth["port"]), user=auth["username"], password=auth["password"],
            dbname=tracking["database"],
        ).close()  # fmt: skip


def test_rendered_command_and_measurements(server: Server) -> None:
    """Keeps the command as run (passwords excluded) and the figures in the test log."""
    text = " ".join(server.command)
    assert "--serve-artifacts" in text
    assert "--app-name basic-auth" in text
    assert server.admin_password not in text
    print(json.dumps({"started_in_s": server.started_in_s, "rss_kib": server.rss_kib}))


def test_without_the_client_env_the_server_hands_out_presigned_store_urls(server: Server) -> None:
    """Why CLIENT_ENV exists: the server advertises presigned transfers to the store itself."""
    request = urllib.request.Request(f"{server.url}/api/3.0/mlflow/server-info")  # noqa: S310 - loopback
    credentials = base64.b64encode(f"{ADMIN}:{server.admin_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        info = json.loads(response.read())
    assert info.get("multipart_downloads_enabled") is True, info


def test_prometheus_metrics_are_served_behind_the_auth_app(server: Server) -> None:
    """--expose-prometheus serves /metrics; the basic-auth app guards it like every other path."""
    assert _http(f"{server.url}/metrics") == 401
    request = urllib.request.Request(f"{server.url}/metrics")  # noqa: S310 - loopback
    credentials = base64.b64encode(f"{ADMIN}:{server.admin_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        body = response.read().decode()
    assert "# TYPE" in body
    assert "flask_http_request" in body or "mlflow" in body, body[:500]


RESEARCH_SCRIPT = r"""
import json, sys, uuid
import numpy as np
import pandas as pd
from qframe.research.reporting import log_strategy_report
from qframe.research.settings import ResearchSettings
from qframe.research.tracking.mlflow_tracking import MlflowTracker

settings = ResearchSettings.from_env()
tracker = MlflowTracker(settings.resolved_tracking_uri, "svc-research-" + uuid.uuid4().hex[:6])
rng = np.random.default_rng(7)
grid = [(fast, slow) for fast in (5, 10) for slow in (50, 100)]
table = pd.DataFrame({
    "task_id": [f"ma-{i}" for i in range(len(grid))], "strategy": "ma_crossover", "dataset": "SYN",
    "split_id": 0, "param_fast": [f for f, _ in grid], "param_slow": [s for _, s in grid],
    "sharpe": rng.normal(0.5, 0.5, len(grid)), "total_return": rng.normal(0.1, 0.1, len(grid)),
    "max_drawdown": -rng.uniform(0.05, 0.3, len(grid)), "n_trades": rng.integers(5, 50, len(grid)),
})
index = pd.date_range("2024-01-01", periods=120, freq="D", tz="UTC")
returns = pd.Series(rng.normal(0.0005, 0.01, 120), index=index)
with tracker.start_sweep("svc-sweep", {"grid": {"fast": [5, 10]}}, {"team": "research"}) as sweep:
    report = log_strategy_report(tracker, "ma_crossover", table, equity=1e6 * (1 + returns).cumprod(),
                                 returns=returns, out_dir=sys.argv[1], heatmap_params=("fast", "slow"))
print(json.dumps({"uri": settings.resolved_tracking_uri, "sweep": sweep.run_id, "child": report.run_id,
                  "experiment": tracker.experiment_id}))
"""


def test_research_flow_logs_a_sweep_with_the_env_users_get(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qframe.research, configured only by the user-server environment the stack renders, logs a sweep.

    The environment is JupyterHub's user_environment for this stack plus CLIENT_ENV and the MLflow
    login; only MLFLOW_TRACKING_URI points at this test's server instead of the in-cluster Service.
    """
    plain, _secret_refs = user_environment(
        UserPlatform(
            namespace="svc",
            lake_bucket="svc-lake",
            object_store_endpoint=None,
            object_store_secret=None,
            mlflow=True,
            kafka_bootstrap=None,
        )
    )
    assert plain["MLFLOW_TRACKING_URI"] == "http://mlflow.svc.svc:5000"
    workdir = tmp_path / "qframe"
    workdir.mkdir()
    env = {
        **plain,
        **CLIENT_ENV,
        "QFRAME_WORKDIR": str(workdir),
        "QFRAME_CATALOG_URL": f"sqlite:///{workdir / 'catalog.db'}",
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": server.admin_password,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, "-c", RESEARCH_SCRIPT, str(tmp_path / "report")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["uri"] == server.url
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    client = MlflowClient(tracking_uri=server.url)
    parent = client.get_run(result["sweep"])
    child = client.get_run(result["child"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["team"] == "research"
    assert child.data.tags["mlflow.parentRunId"] == result["sweep"]
    assert child.data.metrics["combinations"] == 4.0
