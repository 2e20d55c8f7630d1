"""The hub's per-user MLflow accounts (charts/jupyterhub/files/mlflow_accounts.py) against a real MLflow.

The MLflow server is the one charts/mlflow renders, started by the MLflow services test's fixtures
(real PostgreSQL with its own auth database, real MinIO). The hub side is the rendered hub config
(mlflow accounts on, the tracking URL pointed at that server), loaded in the hub image's venv: its
``pre_spawn_hook`` runs on real KubeSpawner objects exactly as the hub runs it before a spawn, and
the pod KubeSpawner then builds is checked. Only the Kubernetes API is a stand-in (a dict of Secrets
that answers 409 for an existing name, as the API server does); the e2e tier covers the real one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.harness import charts
from tests.services import test_mlflow_chart_server as mlflow_chart
from tests.services.test_jupyterhub_hub import hub_python
from tests.services.test_mlflow_chart_server import ADMIN, Server

pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]

CHART = charts.REPO_ROOT / "charts" / "jupyterhub"
NAMESPACE = "qframe"
# The MLflow services test's fixtures: the server exactly as charts/mlflow renders it, on its stores.
stores = mlflow_chart.stores
server = mlflow_chart.server

SPAWN_SCRIPT = """
import asyncio, json, sys
from unittest import mock
from traitlets.config import PyFileConfigLoader
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner

config = PyFileConfigLoader("jupyterhub_config.py", path=sys.argv[1]).load_config()


class SecretsApi:
    # Stands in for CoreV1Api: the two calls the hook may make, with the API server's 409.
    def __init__(self):
        self.secrets, self.calls = {}, []

    async def create_namespaced_secret(self, namespace, body):
        name = body["metadata"]["name"]
        self.calls.append(["create", namespace, name])
        if name in self.secrets:
            raise ApiException(status=409, reason="AlreadyExists")
        self.secrets[name] = body

    async def replace_namespaced_secret(self, name, namespace, body):
        self.calls.append(["replace", namespace, name])
        self.secrets[name] = body


api = SecretsApi()


async def spawn(name):
    user = mock.Mock(id=1, url=f"/user/{name}/", escaped_name=name, settings={})
    user.name = name
    spawner = KubeSpawner(config=config, _mock=True, user=user, hub=Hub(), server=Server(base_url=f"/user/{name}/"))
    spawner.api = api
    spawner.user_options = {"profile": "small"}
    await spawner.load_user_options()
    await spawner.run_pre_spawn_hook()
    client = ApiClient()
    pod = client.sanitize_for_serialization(await spawner.get_pod_manifest())
    await client.close()
    return pod


async def main():
    pods = [await spawn(name) for name in sys.argv[2:]]
    print(json.dumps({"pods": pods, "secrets": api.secrets, "calls": api.calls}))


asyncio.run(main())
"""


def spawn_with_the_rendered_hook(tmp_path: Path, server: Server, user_key: str, *users: str) -> dict[str, Any]:
    values = {
        "mlflow": {"enabled": True, "url": server.url, "adminUsername": ADMIN},
        "singleuser": {"env": {"MLFLOW_TRACKING_URI": server.url}},
    }
    objects = charts.render_by_name(CHART, values, namespace=NAMESPACE, release="jupyterhub")
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    for key, text in objects["ConfigMap", "jupyterhub-hub-config"]["data"].items():
        (etc / key).write_text(text)
    (etc / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: none, user: {token: none}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
    )
    (etc / "spawn.py").write_text(SPAWN_SCRIPT)
    (container,) = objects["Deployment", "jupyterhub-hub"]["spec"]["template"]["spec"]["containers"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env["QFRAME_MLFLOW_ADMIN_PASSWORD"] == {"name": "mlflow-auth", "key": "admin-password"}
    env = {
        **os.environ,
        "KUBECONFIG": str(etc / "kubeconfig"),
        "CONFIGPROXY_AUTH_TOKEN": "t",
        "QFRAME_HUB_DB_URL": "postgresql://u:p@127.0.0.1:9/db",
        "QFRAME_HUB_COOKIE_SECRET": "c",
        "QFRAME_MLFLOW_ADMIN_PASSWORD": server.admin_password,
        "QFRAME_MLFLOW_USER_KEY": user_key,
    }
    done = subprocess.run(
        [str(hub_python()), str(etc / "spawn.py"), str(etc), *users],
        cwd=etc, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _admin_get(server: Server, path: str) -> int:
    request = urllib.request.Request(server.url + path)  # noqa: S310 - loopback only
    token = base64.b64encode(f"{ADMIN}:{server.admin_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _container_env(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in container["env"]}


def test_each_user_gets_an_mlflow_account_idempotently_and_cannot_edit_anothers_runs(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_key = secrets.token_hex(24)
    assert _admin_get(server, "/api/2.0/mlflow/users/get?username=alice") == 404
    # alice spawns twice (the second spawn finds her account and her Secret), bob once.
    result = spawn_with_the_rendered_hook(tmp_path, server, user_key, "alice", "alice", "bob")
    assert _admin_get(server, "/api/2.0/mlflow/users/get?username=alice") == 200
    assert _admin_get(server, "/api/2.0/mlflow/users/get?username=bob") == 200
    stored = result["secrets"]
    assert len(stored) == 2
    by_user = {s["stringData"]["username"]: s for s in stored.values()}
    alice_secret, bob_secret = by_user["alice"]["metadata"]["name"], by_user["bob"]["metadata"]["name"]
    assert alice_secret.startswith("mlflow-user-alice-")
    calls = [tuple(c) for c in result["calls"]]
    assert calls == [
        ("create", NAMESPACE, alice_secret),
        ("create", NAMESPACE, alice_secret),
        ("replace", NAMESPACE, alice_secret),
        ("create", NAMESPACE, bob_secret),
    ]
    alice_password = by_user["alice"]["stringData"]["password"]
    bob_password = by_user["bob"]["stringData"]["password"]
    assert alice_password != bob_password
    # The pod carries references, never the password itself.
    first, second, bob_pod = result["pods"]
    for pod, name, password in ((first, alice_secret, alice_password), (bob_pod, bob_secret, bob_password)):
        env = _container_env(pod)
        assert env["MLFLOW_TRACKING_USERNAME"] == {"secretKeyRef": {"name": name, "key": "username"}}
        assert env["MLFLOW_TRACKING_PASSWORD"] == {"secretKeyRef": {"name": name, "key": "password"}}
        assert password not in json.dumps(pod)
    mlflow_env = [name for name in _container_env(first) if name.startswith("MLFLOW_TRACKING_")]
    assert {n: _container_env(second)[n] for n in mlflow_env} == {n: _container_env(first)[n] for n in mlflow_env}

    # alice logs a run with the login from her Secret (after both spawns: the second kept it valid).
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", alice_password)
    client = MlflowClient(tracking_uri=server.url)
    experiment = client.create_experiment(f"svc-alice-{secrets.token_hex(3)}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "sharpe", 1.25)
    client.set_terminated(run.info.run_id)
    # bob reads it (default permission READ, from the chart's auth.defaultPermission) but cannot edit it.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", bob_password)
    assert client.get_run(run.info.run_id).data.metrics == {"sharpe": 1.25}
    with pytest.raises(MlflowException) as refused:
        client.log_metric(run.info.run_id, "sharpe", -9.0)
    assert refused.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException):
        client.set_tag(run.info.run_id, "owner", "bob")
    # A wrong password or no password: nobody gets in.
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", alice_password)
    with pytest.raises(MlflowException):
        client.get_run(run.info.run_id)


def test_a_refused_admin_login_fails_the_spawn_with_the_reason(server: Server, tmp_path: Path) -> None:
    wrong = Server(
        url=server.url, admin_password="not-the-admin-password", command=[], started_in_s=0, rss_kib=0, log=server.log
    )
    with pytest.raises(AssertionError, match="MLflow refused to create user 'carol': HTTP 401"):
        spawn_with_the_rendered_hook(tmp_path, wrong, secrets.token_hex(24), "carol")
    assert _admin_get(server, "/api/2.0/mlflow/users/get?username=carol") == 404
