"""Real traffic to the MLflow tracking server on the real node, from pods inside the cluster.

The stack is up (tests/e2e/conftest.py); this file sorts before test_pulumi_up.py, whose last test
destroys the stack. A client pod from the mlflow image carries `qframe.io/mlflow-client: "true"`
and only the MLflow credentials (the admin password from the Secret mlflow-auth), never a bucket
key: it logs a run with a metric and an artifact through the server and registers a model
version. A pod without the label is refused by policy, and the server itself cannot open a
connection to anything but its stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infra.components.mlflow import AUTH_SECRET, CLIENT_ENV, CLIENT_LABEL, tracking_uri
from tests.e2e.conftest import DevStack
from tests.e2e.in_cluster import (
    CONNECT_TIMEOUT_S,
    NAMESPACE,
    idle_pod,
    last_json,
    run_in,
    running_pods,
    secret_env,
    stack_image,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def mlflow_client_pod(name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    """An idle pod with the tracking URI, the MLflow login and CLIENT_ENV as its environment."""
    env = [
        {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri(NAMESPACE)},
        {"name": "MLFLOW_TRACKING_USERNAME", "value": "admin"},
        secret_env("MLFLOW_TRACKING_PASSWORD", AUTH_SECRET, "admin-password"),
        {"name": "HOME", "value": "/tmp"},
        *({"name": name, "value": value} for name, value in CLIENT_ENV.items()),
    ]
    return idle_pod(
        name,
        image,
        labels,
        env,
        requests={"cpu": "50m", "memory": "256Mi"},
        limits={"cpu": "1", "memory": "768Mi"},
        writable_tmp=True,
    )


@pytest.fixture(scope="module")
def mlflow_pods(devstack: DevStack) -> Iterator[dict[str, str]]:
    image = stack_image("mlflow")
    names = {"client": "e2e-mlflow-client", "stranger": "e2e-mlflow-stranger"}
    manifests = [
        mlflow_client_pod(names["client"], image, dict(CLIENT_LABEL)),
        mlflow_client_pod(names["stranger"], image, {}),
    ]
    with running_pods(devstack, manifests, timeout_s=300):
        yield names


RUN_SCRIPT = """
    import json, os, tempfile, uuid
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_experiment("e2e-traffic")
    with mlflow.start_run() as run:
        mlflow.log_param("window", 20)
        for step in range(3):
            mlflow.log_metric("pnl", 1.5 * step, step=step)
        path = os.path.join(tempfile.mkdtemp(), "report.json")
        with open(path, "w") as handle:
            json.dump({"ok": True}, handle)
        mlflow.log_artifact(path)
    client = MlflowClient()
    model = "e2e-model-" + uuid.uuid4().hex[:6]
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{run.info.run_id}/report.json", run.info.run_id)
    fetched = client.get_run(run.info.run_id)
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report.json")
    print(json.dumps({"status": fetched.info.status, "metrics": fetched.data.metrics,
                      "artifact_uri": run.info.artifact_uri, "artifact": json.load(open(local)),
                      "version": version.version}))
"""


def test_a_labelled_client_logs_a_run_with_an_artifact_and_registers_a_model(
    devstack: DevStack, mlflow_pods: dict[str, str]
) -> None:
    result = last_json(run_in(devstack, mlflow_pods["client"], RUN_SCRIPT))
    assert result["status"] == "FINISHED"
    assert result["metrics"] == {"pnl": 3.0}
    assert result["artifact_uri"].startswith("mlflow-artifacts:/"), result
    assert result["artifact"] == {"ok": True}
    assert result["version"] == "1"


UNAUTHENTICATED_SCRIPT = """
    import json, os, urllib.request, urllib.error
    url = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        status = urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    print(json.dumps({"status": status}))
"""


def test_the_server_refuses_a_request_without_credentials(devstack: DevStack, mlflow_pods: dict[str, str]) -> None:
    assert last_json(run_in(devstack, mlflow_pods["client"], UNAUTHENTICATED_SCRIPT)) == {"status": 401}


def _connect_script(targets: list[tuple[str, int]]) -> str:
    return f"""
    import json, socket
    results = {{}}
    for host, port in {targets!r}:
        try:
            socket.create_connection((host, port), timeout={CONNECT_TIMEOUT_S}).close()
            results[f"{{host}}:{{port}}"] = "connected"
        except socket.timeout:
            results[f"{{host}}:{{port}}"] = "timeout"
        except OSError as exc:
            results[f"{{host}}:{{port}}"] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(results))
"""


def _refused(results: dict[str, str]) -> bool:
    # kube-router REJECTs (connection refused) where other enforcers drop (timeout).
    return all(v == "timeout" or v.startswith("ConnectionRefusedError") for v in results.values())


def test_a_pod_without_the_client_label_is_refused(devstack: DevStack, mlflow_pods: dict[str, str]) -> None:
    target = [(f"mlflow.{NAMESPACE}.svc", 5000)]
    admitted = last_json(run_in(devstack, mlflow_pods["client"], _connect_script(target)))
    assert set(admitted.values()) == {"connected"}, admitted
    refused = last_json(run_in(devstack, mlflow_pods["stranger"], _connect_script(target)))
    assert _refused(refused), refused


def test_the_server_reaches_its_stores_and_nothing_else(devstack: DevStack) -> None:
    stores = [(f"postgres.{NAMESPACE}.svc", 5432), (f"minio.{NAMESPACE}.svc", 9000)]
    # Kafka is up and admits its own clients; the API server always listens: both must be closed to it.
    others = [(f"kafka.{NAMESPACE}.svc", 9092), ("kubernetes.default.svc", 443)]
    reached = last_json(run_in(devstack, "deploy/mlflow", _connect_script(stores)))
    assert set(reached.values()) == {"connected"}, reached
    blocked = last_json(run_in(devstack, "deploy/mlflow", _connect_script(others)))
    assert _refused(blocked), blocked
