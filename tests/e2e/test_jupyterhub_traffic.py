"""Real traffic through JupyterHub on the real node: log in, spawn a user's server, check its reach.

The dev stack is up (tests/e2e/conftest.py) with auth kind dummy; this file sorts before
test_pulumi_up.py, which destroys the stack at its end. A client pod labelled as a hub client (the
proxy's NetworkPolicy admits it) logs in through the proxy's Service with the generated shared
password from the Secret jupyterhub-hub, as an allowed and as an unlisted user, and starts the
allowed user's server; KubeSpawner creates the pod and its PVC. From inside that user pod the
policies are checked with real connections: MLflow, the object store, Kafka and the hub's API are
reachable, Postgres and the Kubernetes API are not. Before the spawn the hub made the user's MLflow
account and Secret; the server logs a run to MLflow with exactly the login its pod spec references
(never a literal password in the spec). The server, its PVC and its MLflow Secret are removed at the end.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.components.jupyterhub import CLIENT_LABEL as HUB_CLIENT
from infra.components.jupyterhub import MLFLOW_USER_SECRET_PREFIX
from tests.e2e.conftest import DevStack
from tests.e2e.in_cluster import NAMESPACE, idle_pod, kubectl, last_json, run_in, running_pods, secret_env, stack_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

USER, STRANGER = "researcher", "mallory"
HUB_URL = f"http://jupyterhub.{NAMESPACE}.svc:8000"
USER_POD, USER_PVC = f"jupyter-{USER}", f"claim-{USER}"


def hub_client_pod(image: str) -> dict[str, Any]:
    env = [secret_env("HUB_PASSWORD", "jupyterhub-hub", "dummy-password")]
    return idle_pod(
        "e2e-hub-client",
        image,
        HUB_CLIENT,
        env,
        requests={"cpu": "50m", "memory": "64Mi"},
        limits={"cpu": "500m", "memory": "256Mi"},
    )


@pytest.fixture(scope="module")
def client(devstack: DevStack) -> Iterator[str]:
    try:
        with running_pods(devstack, [hub_client_pod(stack_image("tools"))], timeout_s=180) as (name,):
            yield name
    finally:
        kubectl(devstack, "delete", "pod,pvc", "-n", NAMESPACE, USER_POD, USER_PVC, "--wait=false", check=False)
        # The hub writes the users' MLflow Secrets outside Pulumi's state: removed here, as the PVC is.
        kubectl(
            devstack, "delete", "secret", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=mlflow-credentials",
            "--wait=false", check=False,
        )  # fmt: skip


# Logs in through the proxy (form login with the _xsrf cookie), then acts with the session cookie.
HUB_SCRIPT = """
    import http.cookiejar, json, os, sys, time, urllib.error, urllib.parse, urllib.request
    HUB, ACTION, USER = {hub!r}, {action!r}, {user!r}

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def session():
        jar = http.cookiejar.CookieJar()
        return jar, urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    def call(opener, method, url, data=None, headers=None):
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {{}})
        try:
            with opener.open(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(user, password):
        jar, opener = session()
        call(opener, "GET", f"{{HUB}}/hub/login")
        xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
        form = urllib.parse.urlencode({{"username": user, "password": password, "_xsrf": xsrf}}).encode()
        status, _ = call(opener, "POST", f"{{HUB}}/hub/login", form)
        # The xsrf token is bound to the session: a page view after login sets the one the API takes.
        call(opener, "GET", f"{{HUB}}/hub/home")
        xsrf = [c.value for c in jar if c.name == "_xsrf"][-1]
        return status, opener, xsrf

    password = os.environ["HUB_PASSWORD"]
    result = {{}}
    if ACTION == "login":
        result["health"] = call(session()[1], "GET", f"{{HUB}}/hub/health")[0]
        result["allowed"] = login(USER, password)[0]
        result["unlisted"] = login({stranger!r}, password)[0]
        result["wrong_password"] = login(USER, "not-the-password")[0]
    else:
        status, opener, xsrf = login(USER, password)
        # Cookie-authenticated API calls need the session's xsrf token and a JSON content type.
        headers = {{"X-XSRFToken": xsrf, "Content-Type": "application/json"}}
        if ACTION == "spawn":
            status, body = call(opener, "POST", f"{{HUB}}/hub/api/users/{{USER}}/server", b"{{}}", headers)
            result["spawn"], result["body"] = status, body[:300]
        elif ACTION == "reach":
            deadline = time.monotonic() + 120
            while True:
                status, body = call(opener, "GET", f"{{HUB}}/user/{{USER}}/api")
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(2)
            result["server_api"], result["server_body"] = status, body[:200]
        elif ACTION == "stop":
            result["stop"] = call(opener, "DELETE", f"{{HUB}}/hub/api/users/{{USER}}/server", None, headers)[0]
    print(json.dumps(result))
"""


def hub_action(stack: DevStack, client: str, action: str) -> dict[str, Any]:
    script = HUB_SCRIPT.format(hub=HUB_URL, action=action, user=USER, stranger=STRANGER)
    return last_json(run_in(stack, client, script))


# Inside the user's pod: which services answer a TCP connection (the policies decide).
REACH_SCRIPT = """
    import json, socket
    targets = {
        "mlflow": ("mlflow.qframe.svc", 5000),
        "object_store": ("minio.qframe.svc", 9000),
        "kafka": ("kafka.qframe.svc", 9092),
        "hub_api": ("jupyterhub-hub.qframe.svc", 8081),
        "postgres": ("postgres.qframe.svc", 5432),
        "kubernetes_api": ("kubernetes.default.svc", 443),
    }
    result = {}
    for name, address in targets.items():
        try:
            socket.create_connection(address, timeout=5).close()
            result[name] = "connected"
        except OSError as exc:
            result[name] = type(exc).__name__
    print(json.dumps(result))
"""


# Inside the user's pod, with the token of the account KubeSpawner gave it: what may it do?
ACCESS_SCRIPT = """
    import json, ssl, urllib.request
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = open(f"{sa}/token").read()
    context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
    api = "https://kubernetes.default.svc"

    def call(method, path, body=None):
        request = urllib.request.Request(api + path, data=body and json.dumps(body).encode(), method=method,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def can(verb, group, resource):
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"namespace": "qframe", "verb": verb, "group": group,
                                                  "resource": resource}}}
        return call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)[1]["status"]["allowed"]

    print(json.dumps({
        "list daskclusters": call("GET", "/apis/kubernetes.dask.org/v1/namespaces/qframe/daskclusters")[0],
        "list secrets": call("GET", "/api/v1/namespaces/qframe/secrets")[0],
        "can create daskclusters": can("create", "kubernetes.dask.org", "daskclusters"),
        "can create pods": can("create", "", "pods"),
        "can get secrets": can("get", "", "secrets"),
    }))
"""


# Inside the user's pod, with only the environment KubeSpawner gave it: log a run to MLflow.
MLFLOW_SCRIPT = """
    import json, os
    import mlflow
    from mlflow import MlflowClient
    user = os.environ["MLFLOW_TRACKING_USERNAME"]
    mlflow.set_experiment(f"e2e-notebook-{user}")
    with mlflow.start_run() as run:
        mlflow.log_metric("sharpe", 1.5)
        mlflow.log_param("lookback", 20)
    data = MlflowClient().get_run(run.info.run_id).data
    print(json.dumps({"user": user, "uri": os.environ["MLFLOW_TRACKING_URI"], "metrics": data.metrics,
                      "params": data.params}))
"""


def test_login_through_the_proxy_admits_only_the_listed_user(devstack: DevStack, client: str) -> None:
    result = hub_action(devstack, client, "login")
    assert result == {"health": 200, "allowed": 302, "unlisted": 403, "wrong_password": 403}


def test_a_spawned_server_reaches_its_services_and_not_postgres(devstack: DevStack, client: str) -> None:
    assert hub_action(devstack, client, "spawn")["spawn"] in (201, 202)
    kubectl(devstack, "wait", "-n", NAMESPACE, "--for=condition=Ready", f"pod/{USER_POD}", "--timeout=300s")
    pvc = json.loads(kubectl(devstack, "get", "pvc", "-n", NAMESPACE, USER_PVC, "-o", "json"))
    assert pvc["status"]["phase"] == "Bound"
    pod = json.loads(kubectl(devstack, "get", "pod", "-n", NAMESPACE, USER_POD, "-o", "json"))
    # The dev stack deploys Dask: users run as its dask-users account (their own KubeClusters).
    assert pod["spec"]["serviceAccountName"] == "dask-users"
    assert pod["spec"]["automountServiceAccountToken"] is True
    reached = hub_action(devstack, client, "reach")
    assert reached["server_api"] == 200, reached
    reach = last_json(run_in(devstack, USER_POD, REACH_SCRIPT))
    assert {name: reach[name] for name in ("mlflow", "object_store", "kafka", "hub_api")} == dict.fromkeys(
        ("mlflow", "object_store", "kafka", "hub_api"), "connected"
    ), reach
    assert reach["postgres"] != "connected", reach
    assert reach["kubernetes_api"] == "connected", reach
    access = last_json(run_in(devstack, USER_POD, ACCESS_SCRIPT))
    assert access == {
        "list daskclusters": 200,
        "list secrets": 403,
        "can create daskclusters": True,
        "can create pods": False,
        "can get secrets": False,
    }, access
    # The user's own MLflow login, by reference to the Secret the hub wrote before the spawn.
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"].startswith(f"{MLFLOW_USER_SECRET_PREFIX}{USER}-")
    assert ref["key"] == "password"
    secret = json.loads(kubectl(devstack, "get", "secret", "-n", NAMESPACE, ref["name"], "-o", "json"))
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert password not in json.dumps(pod)
    logged = last_json(run_in(devstack, USER_POD, MLFLOW_SCRIPT))
    assert logged["user"] == USER
    assert logged["uri"] == f"http://mlflow.{NAMESPACE}.svc:5000"
    assert logged["metrics"] == {"sharpe": 1.5}
    assert logged["params"] == {"lookback": "20"}
    assert hub_action(devstack, client, "stop")["stop"] in (202, 204)
