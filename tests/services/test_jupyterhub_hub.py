"""The hub from charts/jupyterhub's rendered config on a real PostgreSQL, with a real proxy.

Rendered by `helm template` (dummy auth, a short culler timeout): the hub runs the rendered
jupyterhub_config.py with the rendered hub.json and exactly the environment variable names the hub
Deployment takes from Secrets (values generated here, the database URI in the Secret's
``postgresql://`` form); the proxy runs the proxy Deployment's command line. Only what cannot exist
outside a cluster is swapped, in a wrapper config owned by this test: Service DNS names become
127.0.0.1 with free ports, and KubeSpawner becomes a local-process spawner running JupyterHub's own
mock single-user server. The idle culler is the rendered hub service, unchanged.

JupyterHub comes from the hub image's wheelhouse (the exact pins of images/hub/requirements.txt),
installed once into a venv under ~/.cache/qframe-tools; configurable-http-proxy from the image's npm
input, on the host's Node.js.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.harness import charts
from tests.harness.security import pod_contexts, rule_service_account_token_on_pod
from tools import services
from tools.images.artifacts import npm_modules
from tools.images.wheels import HOUSE_REQUIREMENTS
from tools.images.wheels import wheelhouse as wheelhouse_of
from tools.services._net import free_port
from tools.services._process import ServiceProcess

pytestmark = pytest.mark.services

CHART = charts.REPO_ROOT / "charts" / "jupyterhub"
NAMESPACE = "qframe"
IMAGES_CACHE = Path.home() / ".cache" / "qframe-images"
VENV = Path.home() / ".cache" / "qframe-tools" / "jupyterhub-services-venv"
REQUIREMENTS = charts.REPO_ROOT / "images" / "hub" / "requirements.txt"
PROXY_PROJECT = charts.REPO_ROOT / "images" / "hub" / "proxy"
CULL_TIMEOUT_S, CULL_EVERY_S = 10, 5
ALLOWED, DISALLOWED, ADMIN = "alice", "mallory", "admin"
# The provider is never contacted: the tests stop at the redirect to its authorize endpoint.
OAUTH = {
    "existingSecret": "sso-client",
    "callbackUrl": "https://hub.example.com/hub/oauth_callback",
    "allowedGroups": ["quants"],
    "authorizeUrl": "https://sso.example.com/authorize",
    "tokenUrl": "https://sso.example.com/token",
    "userdataUrl": "https://sso.example.com/userinfo",
}


def hub_python() -> Path:
    """The venv with the hub image's pinned packages (created once; pip from the local wheelhouse only)."""
    python = VENV / "bin" / "python"
    stamp = VENV / "requirements.txt"
    # Exactly the hub image's hashed wheels (downloaded once, cached by the requirements' content;
    # onetimepass built from its hashed sdist), not whatever wheelhouse an earlier build left behind.
    # The house's requirements.txt is the one the image installs (the built wheel's hash added).
    house = wheelhouse_of(REQUIREMENTS)
    installed = (house / HOUSE_REQUIREMENTS).read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == installed:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(house), "--require-hashes"]
    subprocess.run([*pip, "-r", str(house / HOUSE_REQUIREMENTS)], check=True)
    stamp.write_text(installed)
    return python


def proxy_script() -> Path:
    """The hub image's own configurable-http-proxy (its package-lock, `npm ci`, cached)."""
    modules = npm_modules(PROXY_PROJECT, IMAGES_CACHE / "logs")
    return modules / "configurable-http-proxy" / "bin" / "configurable-http-proxy"


@dataclass(frozen=True)
class Rendered:
    config_py: str
    settings: dict[str, Any]
    hub_command: list[str]
    hub_secret_env: list[str]
    proxy_command: list[str]


def render(kind: str) -> Rendered:
    auth: dict[str, Any] = {"kind": kind, "adminUsers": [ADMIN], "allowedUsers": [ALLOWED]}
    if kind in ("github", "generic-oauth"):
        auth["oauth"] = OAUTH
    values = {"auth": auth, "cull": {"enabled": True, "timeout": CULL_TIMEOUT_S, "every": CULL_EVERY_S}}
    objects = charts.render_by_name(CHART, values, namespace=NAMESPACE, release="jupyterhub")
    data = objects["ConfigMap", "jupyterhub-hub-config"]["data"]
    (hub,) = objects["Deployment", "jupyterhub-hub"]["spec"]["template"]["spec"]["containers"]
    (proxy,) = objects["Deployment", "jupyterhub-proxy"]["spec"]["template"]["spec"]["containers"]
    return Rendered(
        config_py=data["jupyterhub_config.py"],
        settings=json.loads(data["hub.json"]),
        hub_command=hub["command"],
        hub_secret_env=[e["name"] for e in hub["env"] if "valueFrom" in e],
        proxy_command=proxy["command"],
    )


@dataclass(frozen=True)
class Hub:
    url: str
    api_token: str
    password: str
    log: Path


def _answers(url: str) -> bool:
    return requests.get(url, timeout=2).status_code < 500


def _database(postgres: services.PostgresService) -> str:
    """A fresh ``jupyterhub`` database; the URI in the form the postgres-jupyterhub Secret's ``uri`` has."""
    name = f"jupyterhub_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{postgres.user}:{postgres.password}@{postgres.host}:{postgres.port}/{name}"


def _stop_user_servers(api_url: str, token: str) -> None:
    headers = {"Authorization": f"token {token}"}
    try:
        users = requests.get(f"{api_url}/users", headers=headers, timeout=10).json()
        running = [user["name"] for user in users if user.get("servers")]
        for name in running:
            requests.delete(f"{api_url}/users/{name}/server", headers=headers, timeout=30)
        deadline = time.monotonic() + 30
        while running and time.monotonic() < deadline:
            users = requests.get(f"{api_url}/users", headers=headers, timeout=10).json()
            running = [user["name"] for user in users if user.get("servers")]
            time.sleep(0.5)
    except requests.RequestException:
        pass  # the hub is already gone; nothing it started can be reached through it


@contextlib.contextmanager
def running_hub(kind: str, postgres: services.PostgresService, work: Path) -> Iterator[Hub]:
    """The rendered hub (auth ``kind``) and proxy as processes, stopped on exit."""
    rendered = render(kind)
    python = hub_python()
    etc = work / "etc"
    etc.mkdir()
    (etc / "jupyterhub_config.py").write_text(rendered.config_py)
    (etc / "hub.json").write_text(json.dumps(rendered.settings))
    hub_port, proxy_port, api_port = free_port(), free_port(), free_port()
    api_token = secrets.token_hex(24)
    # Test-only swaps (see the module docstring); everything else is the rendered config.
    (work / "test_config.py").write_text(
        f"""
c = get_config()  # noqa: F821
load_subconfig({str(etc / "jupyterhub_config.py")!r})  # noqa: F821
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.bind_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.Spawner.cmd = [{str(python)!r}, "-m", "jupyterhub.tests.mocksu"]
c.Spawner.start_timeout = 30
c.JupyterHub.services.append({{"name": "test-driver", "api_token": {api_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "test-driver", "scopes": ["admin:users", "admin:servers"], "services": ["test-driver"]}}
)
"""
    )
    secret_values = {
        "QFRAME_HUB_DB_URL": _database(postgres),
        "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(24),
        "QFRAME_HUB_COOKIE_SECRET": secrets.token_hex(32),
    }
    if kind == "dummy":
        secret_values["QFRAME_HUB_DUMMY_PASSWORD"] = secrets.token_hex(12)
    if kind in ("github", "generic-oauth"):
        secret_values.update(OAUTH_CLIENT_ID="qframe-hub-client", OAUTH_CLIENT_SECRET=secrets.token_hex(16))
    assert sorted(rendered.hub_secret_env) == sorted(secret_values), "the hub Deployment's Secret env changed"
    env = {**os.environ, **secret_values, "HOME": str(work), "PATH": f"{python.parent}:{os.environ['PATH']}"}

    # The proxy: the rendered command line with the Service addresses replaced by loopback ports.
    proxy_args = [
        re.sub(r"http://jupyterhub-hub\.qframe\.svc:8081", f"http://127.0.0.1:{hub_port}", arg)
        .replace("--port=8000", f"--port={proxy_port}")
        .replace("--api-port=8001", f"--api-port={api_port}")
        .replace("--ip=", "--ip=127.0.0.1")
        .replace("--api-ip=", "--api-ip=127.0.0.1")
        for arg in rendered.proxy_command[1:]
    ]
    assert rendered.proxy_command[0] == "configurable-http-proxy"
    # Own sessions, stopped as whole process groups: the hub's managed idle culler outlives a
    # stopped hub otherwise.
    fix = "read the log above; the command is the one the chart renders"
    proxy = ServiceProcess(
        "configurable-http-proxy",
        ["node", str(proxy_script()), *proxy_args],
        work / "proxy.log",
        fix=fix,
        cwd=work,
        env=env,
    )
    hub_log = work / "hub.log"
    assert rendered.hub_command[:2] == ["jupyterhub", "--config"]
    hub_process = ServiceProcess(
        "jupyterhub",
        [str(python.parent / "jupyterhub"), "--config", str(work / "test_config.py")],
        hub_log,
        fix=fix,
        cwd=work,
        env=env,
    )
    try:
        proxy_health, hub_health = (
            f"http://127.0.0.1:{proxy_port}/_chp_healthz",
            f"http://127.0.0.1:{proxy_port}/hub/health",
        )
        proxy.wait_ready(lambda: _answers(proxy_health), timeout_s=60, what=proxy_health)
        hub_process.wait_ready(lambda: _answers(hub_health), timeout_s=60, what=hub_health)
        password = secret_values.get("QFRAME_HUB_DUMMY_PASSWORD", "")
        yield Hub(f"http://127.0.0.1:{proxy_port}", api_token, password, hub_log)
    finally:
        # The rendered config keeps user servers across hub restarts (cleanup_servers off), so the
        # local ones are stopped through the API before the hub goes.
        _stop_user_servers(f"http://127.0.0.1:{hub_port}/hub/api", api_token)
        hub_process.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def hub(postgres: services.PostgresService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub("dummy", postgres, tmp_path_factory.mktemp("jupyterhub-dummy")) as started:
        yield started


def login(hub: Hub, user: str, password: str) -> requests.Response:
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=10)
    xsrf = session.cookies.get("_xsrf", "")
    return session.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": password, "_xsrf": xsrf},
        allow_redirects=False,
        timeout=10,
    )


def api(hub: Hub, method: str, path: str) -> requests.Response:
    return requests.request(
        method, f"{hub.url}/hub/api{path}", headers={"Authorization": f"token {hub.api_token}"}, timeout=10
    )


def test_an_allowed_user_logs_in_with_the_shared_password(hub: Hub) -> None:
    response = login(hub, ALLOWED, hub.password)
    assert response.status_code == 302, response.text[-500:]
    assert "jupyterhub-session-id" in response.cookies or "jupyterhub-hub-login" in response.cookies


def test_an_unlisted_user_and_a_wrong_password_are_refused(hub: Hub) -> None:
    for user, password in ((DISALLOWED, hub.password), (ALLOWED, "not-the-password")):
        response = login(hub, user, password)
        assert response.status_code == 403, f"{user}: {response.status_code}"
        assert "jupyterhub-hub-login" not in response.cookies


def test_a_server_starts_and_the_culler_stops_it(hub: Hub) -> None:
    api(hub, "POST", f"/users/{ALLOWED}")  # created on first login too; 409 when it exists
    started = api(hub, "POST", f"/users/{ALLOWED}/server")
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + 30
    while not api(hub, "GET", f"/users/{ALLOWED}").json()["servers"].get("", {}).get("ready"):
        assert time.monotonic() < deadline, hub.log.read_text()[-3000:]
        time.sleep(0.5)
    ready_at = time.monotonic()
    # The proxy routes the user's prefix to the user's server (the mock echoes the path).
    echoed = requests.get(f"{hub.url}/user/{ALLOWED}/through-the-proxy", timeout=10)
    assert echoed.status_code == 200
    assert echoed.text == f"/user/{ALLOWED}/through-the-proxy"
    # The culler (the rendered hub service) stops it once it has been idle for the timeout.
    deadline = ready_at + CULL_TIMEOUT_S + 3 * CULL_EVERY_S + 20
    while api(hub, "GET", f"/users/{ALLOWED}").json()["servers"]:
        assert time.monotonic() < deadline, "the idle culler did not stop the server:\n" + hub.log.read_text()[-3000:]
        time.sleep(1)
    stopped_after = time.monotonic() - ready_at
    print(f"server culled {stopped_after:.1f} s after it became ready (timeout {CULL_TIMEOUT_S} s)")
    assert stopped_after >= CULL_TIMEOUT_S - 2, f"stopped after {stopped_after:.1f} s, before the idle timeout"
    assert "idle-culler" in hub.log.read_text()


# Builds a user's pod and PVC with the real KubeSpawner from the rendered config (no API calls:
# KubeSpawner's own _mock mode, a kubeconfig pointing nowhere) and prints them as JSON.
MANIFEST_SCRIPT = """
import asyncio, json, os, sys
from unittest import mock
from traitlets.config import PyFileConfigLoader
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner

config = PyFileConfigLoader("jupyterhub_config.py", path=sys.argv[1]).load_config()
user = mock.Mock(id=1, url="/user/alice/", escaped_name="alice", settings={})
user.name = "alice"

async def main():
    spawner = KubeSpawner(config=config, _mock=True, user=user, hub=Hub(), server=Server(base_url="/user/alice/"))
    spawner.user_options = {"profile": sys.argv[2]}
    await spawner.load_user_options()
    client = ApiClient()
    pod = client.sanitize_for_serialization(await spawner.get_pod_manifest())
    pvc = client.sanitize_for_serialization(spawner.get_pvc_manifest())
    print(json.dumps({"pod": pod, "pvc": pvc}))
    await client.close()

asyncio.run(main())
"""


def user_pod(
    tmp_path: Path, profile: str, singleuser: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(pod, pvc, the rendered user-server NetworkPolicy) for ``profile``; ``singleuser``: extra values."""
    values = {
        "singleuser": dict(singleuser or {})
        | {
            "podLabels": {"qframe.io/object-store-client": "true", "qframe.io/mlflow-client": "true"},
            "storage": {"size": "7Gi", "storageClassName": ""},
            "env": {"QFRAME_LAKE_URL": "s3://qframe-data-lake/"},
            "secretEnv": [
                {"name": "AWS_SECRET_ACCESS_KEY", "secretName": "object-store-notebooks", "key": "secret-key"}
            ],
            "profiles": [
                {"slug": "small", "displayName": "Small", "default": True, "cpuGuarantee": 1, "cpuLimit": 2}
                | {"memGuarantee": 2**31, "memLimit": 2**32},
                {"slug": "gpu", "displayName": "GPU", "default": False, "cpuGuarantee": 2, "cpuLimit": 4}
                | {"memGuarantee": 2**33, "memLimit": 2**34}
                | {"gpu": {"count": 1, "nodeSelector": {"qframe.io/gpu": "true"}, "tolerationKey": "nvidia.com/gpu"}},
            ],
        }
    }
    objects = charts.render_by_name(CHART, values, namespace=NAMESPACE, release="jupyterhub")
    data = objects["ConfigMap", "jupyterhub-hub-config"]["data"]
    etc = tmp_path / profile
    etc.mkdir()
    (etc / "jupyterhub_config.py").write_text(data["jupyterhub_config.py"])
    (etc / "hub.json").write_text(data["hub.json"])
    (etc / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n"
        "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: none, user: {token: none}}]\n"
        "contexts: [{name: none, context: {cluster: none, user: none}}]\n"
    )
    (etc / "manifest.py").write_text(MANIFEST_SCRIPT)
    env = {
        **os.environ,
        "KUBECONFIG": str(etc / "kubeconfig"),
        "CONFIGPROXY_AUTH_TOKEN": "t",
        "QFRAME_HUB_DB_URL": "postgresql://u:p@127.0.0.1:9/db",
        "QFRAME_HUB_COOKIE_SECRET": "c",
    }
    proc = subprocess.run(
        [str(hub_python()), str(etc / "manifest.py"), str(etc), profile],
        cwd=etc,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    return built["pod"], built["pvc"], objects["NetworkPolicy", "jupyterhub-singleuser"]


def test_kubespawner_builds_restricted_labelled_user_pods_from_the_rendered_config(tmp_path: Path) -> None:
    pod, pvc, policy = user_pod(tmp_path, "small")
    labels = pod["metadata"]["labels"]
    # The rendered policy selects the pods KubeSpawner really creates, and the client labels are on them.
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert labels["qframe.io/object-store-client"] == "true"
    assert labels["qframe.io/mlflow-client"] == "true"
    assert "qframe.io/postgres-client" not in labels
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["QFRAME_LAKE_URL"]["value"] == "s3://qframe-data-lake/"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "object-store-notebooks", "key": "secret-key"}
    }
    assert container["resources"] == {
        "limits": {"cpu": 2.0, "memory": 2**32},
        "requests": {"cpu": 1.0, "memory": 2**31},
    }
    assert {"name": "home", "mountPath": "/home/jovyan"} in container["volumeMounts"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}} in spec["volumes"]
    assert pvc["metadata"]["name"] == "claim-alice"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "7Gi"


def test_with_a_user_service_account_kubespawner_mounts_its_token_and_says_why(tmp_path: Path) -> None:
    purpose = "creates the user's own Dask clusters"
    pod, _, _ = user_pod(tmp_path, "small", {"serviceAccount": "dask-users", "serviceAccountPurpose": purpose})
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "dask-users"
    assert spec["automountServiceAccountToken"] is True
    assert pod["metadata"]["annotations"]["qframe.io/needs-service-account-token"] == purpose
    (context,) = pod_contexts({"kind": "Pod", **pod})
    assert rule_service_account_token_on_pod(context) == []


def test_an_identity_only_account_names_the_pods_account_without_mounting_its_token(tmp_path: Path) -> None:
    # IRSA without Dask: the servers run as `notebooks` for its IAM role (the EKS webhook mounts
    # the web-identity token); no Kubernetes API token, no annotation claiming a need for one.
    pod, _, policy = user_pod(tmp_path, "small", {"serviceAccount": "notebooks", "serviceAccountPurpose": ""})
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "notebooks"
    assert spec["automountServiceAccountToken"] is False
    assert "qframe.io/needs-service-account-token" not in (pod["metadata"].get("annotations") or {})
    # ... and the API server stays closed to them: the hub's port is the only egress rule.
    assert [rule.get("ports") for rule in policy["spec"]["egress"]] == [[{"protocol": "TCP", "port": 8081}]]
    (context,) = pod_contexts({"kind": "Pod", **pod})
    assert rule_service_account_token_on_pod(context) == []


def test_the_gpu_profile_adds_the_gpu_its_node_selector_and_toleration(tmp_path: Path) -> None:
    pod, _pvc, _policy = user_pod(tmp_path, "gpu")
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"qframe.io/gpu": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == 2.0


@pytest.mark.parametrize(
    ("kind", "authorize_url"),
    [("generic-oauth", OAUTH["authorizeUrl"]), ("github", "https://github.com/login/oauth/authorize")],
)
def test_oauth_kinds_send_users_to_the_provider_with_the_client_id_from_the_secret(
    kind: str, authorize_url: str, postgres: services.PostgresService, tmp_path: Path
) -> None:
    with running_hub(kind, postgres, tmp_path) as hub:
        response = requests.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text[-500:]
        location = response.headers["Location"]
        assert location.startswith(f"{authorize_url}?")
        assert "client_id=qframe-hub-client" in location
        assert "redirect_uri=https%3A%2F%2Fhub.example.com%2Fhub%2Foauth_callback" in location


def signup(hub: Hub, user: str, password: str) -> requests.Response:
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/signup", timeout=10)
    assert page.status_code == 200, page.text[-500:]
    return session.post(
        f"{hub.url}/hub/signup",
        data={
            "username": user,
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": session.cookies.get("_xsrf", ""),
        },
        timeout=10,
    )


def _logged_in(response: requests.Response) -> bool:
    return response.status_code == 302 and "jupyterhub-session-id" in response.cookies


def test_native_sign_up_waits_for_an_admin_and_only_approved_users_get_in(
    postgres: services.PostgresService, tmp_path: Path
) -> None:
    """The default auth kind off dev: sign-up, refused until an admin approves, then let in."""
    passwords = {name: secrets.token_hex(12) for name in (ADMIN, "bob", "eve")}
    with running_hub("native", postgres, tmp_path) as hub:
        for name, password in passwords.items():
            created = signup(hub, name, password)
            assert created.status_code == 200, f"sign-up of {name}: {created.status_code}\n" + created.text[-800:]
        # Signed up but not approved: refused with the right password, told why.
        refused = login(hub, "bob", passwords["bob"])
        assert not _logged_in(refused), refused.status_code
        assert "has not been authorized" in refused.text
        # The admin (pre-approved as an admin user) approves bob.
        admin = requests.Session()
        admin.get(f"{hub.url}/hub/login", timeout=10)
        signed_in = admin.post(
            f"{hub.url}/hub/login",
            data={"username": ADMIN, "password": passwords[ADMIN], "_xsrf": admin.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=10,
        )
        assert _logged_in(signed_in), signed_in.status_code
        approved = admin.get(f"{hub.url}/hub/authorize/bob", allow_redirects=False, timeout=10)
        assert approved.status_code == 302, approved.text[-500:]
        assert _logged_in(login(hub, "bob", passwords["bob"]))
        # Never approved, never signed up, or a wrong password: nobody else gets in.
        for name, password in (("eve", passwords["eve"]), (DISALLOWED, "whatever-pw"), ("bob", "wrong")):
            response = login(hub, name, password)
            assert not _logged_in(response), f"{name} got in"
        # A user cannot approve anyone (the approval page is admin-only).
        bob = requests.Session()
        bob.get(f"{hub.url}/hub/login", timeout=10)
        bob.post(
            f"{hub.url}/hub/login",
            data={"username": "bob", "password": passwords["bob"], "_xsrf": bob.cookies.get("_xsrf", "")},
            timeout=10,
        )
        assert bob.get(f"{hub.url}/hub/authorize/eve", allow_redirects=False, timeout=10).status_code == 403
        assert not _logged_in(login(hub, "eve", passwords["eve"]))
