"""Chart unit tests for charts/mlflow: "should render X when Y is set", with the real helm."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.charts.test_client_egress import connection_allowed
from tests.harness import charts

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "mlflow"
NAMESPACE = "qframe"
CLIENT = {"qframe.io/mlflow-client": "true"}
POSTGRES_SERVER = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "postgres"}
MINIO_SERVER = {"app.kubernetes.io/name": "minio", "app.kubernetes.io/instance": "minio"}
# What the Pulumi component passes: the data services' client labels and egress to exactly them.
WIRED = {
    "podLabels": {"qframe.io/postgres-client": "true", "qframe.io/object-store-client": "true"},
    "networkPolicy": {
        "egress": [
            {"to": [{"podSelector": {"matchLabels": POSTGRES_SERVER}}], "ports": [5432]},
            {"to": [{"podSelector": {"matchLabels": MINIO_SERVER}}], "ports": [9000]},
        ]
    },
    "artifacts": {"s3": {"endpointUrl": "http://minio.qframe.svc:9000", "existingSecret": "object-store-mlflow"}},
}


def render(values: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release="mlflow")


def pod_spec(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec = objects["Deployment", "mlflow"]["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container(objects: Mapping[tuple[str, str], dict[str, Any]], name: str = "mlflow") -> dict[str, Any]:
    spec = pod_spec(objects)
    (found,) = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    assert isinstance(found, dict)
    return found


def env_of(c: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_defaults_render_the_expected_objects() -> None:
    assert sorted(render()) == [
        ("ConfigMap", "mlflow-auth-config"),
        ("Deployment", "mlflow"),
        ("NetworkPolicy", "mlflow-client-egress-0"),
        ("NetworkPolicy", "mlflow-default-deny"),
        ("NetworkPolicy", "mlflow-server"),
        ("Service", "mlflow"),
    ]


def test_server_command_line_serves_artifacts_with_auth_and_metrics() -> None:
    command = container(render())["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "s3://qframe-mlflow-artifacts"
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--expose-prometheus") + 1] == "/tmp/prometheus"
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow.qframe.svc:*" in hosts
    assert "mlflow.qframe.svc.cluster.local:*" in hosts


def test_metrics_off_drops_the_flag_and_the_scrape_annotations() -> None:
    objects = render({"metrics": {"enabled": False}})
    assert "--expose-prometheus" not in container(objects)["command"]
    assert "prometheus.io/scrape" not in objects["Deployment", "mlflow"]["spec"]["template"]["metadata"]["annotations"]
    assert "annotations" not in objects["Service", "mlflow"]["metadata"]
    on = render()
    assert on["Service", "mlflow"]["metadata"]["annotations"]["prometheus.io/port"] == "5000"


def test_credentials_reach_the_pod_only_through_secret_refs() -> None:
    objects = render(WIRED)
    assert not [key for key in objects if key[0] == "Secret"]
    env = env_of(container(objects))
    for name, key, secret in (
        ("MLFLOW_DB_USER", "username", "postgres-mlflow"),
        ("MLFLOW_DB_PASSWORD", "password", "postgres-mlflow"),
        ("MLFLOW_DB_HOST", "host", "postgres-mlflow"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "admin-password", "mlflow-auth"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask-secret-key", "mlflow-auth"),
        ("AWS_ACCESS_KEY_ID", "access-key", "object-store-mlflow"),
        ("AWS_SECRET_ACCESS_KEY", "secret-key", "object-store-mlflow"),
    ):
        assert env[name] == {"secretKeyRef": {"name": secret, "key": key}}, name
    # The URI is assembled by Kubernetes from the Secret-backed variables: no literal login in it.
    assert env["MLFLOW_BACKEND_STORE_URI"] == (
        "postgresql+psycopg://$(MLFLOW_DB_USER):$(MLFLOW_DB_PASSWORD)@$(MLFLOW_DB_HOST):$(MLFLOW_DB_PORT)"
        "/$(MLFLOW_DB_NAME)?sslmode=$(MLFLOW_DB_SSLMODE)"
    )
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.qframe.svc:9000"


def test_iam_role_mode_renders_no_key_pair_and_no_endpoint() -> None:
    env = env_of(container(render({"artifacts": {"s3": {"endpointUrl": "", "existingSecret": ""}}})))
    assert "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "MLFLOW_S3_ENDPOINT_URL" not in env


def test_migrations_and_auth_config_run_before_the_server() -> None:
    objects = render()
    spec = pod_spec(objects)
    assert [c["name"] for c in spec["initContainers"]] == ["db-upgrade", "auth-config"]
    assert container(objects, "db-upgrade")["command"] == ["mlflow", "db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"]
    auth_env = env_of(container(objects, "auth-config"))
    # The auth app's own database: its login only from its own Secret; the tracking store's login
    # is not handed to the auth-config container, nor the auth login to the server.
    for name, key in (("AUTH_DB_USER", "username"), ("AUTH_DB_PASSWORD", "password"), ("AUTH_DB_NAME", "database")):
        assert auth_env[name] == {"secretKeyRef": {"name": "postgres-mlflow-auth", "key": key}}, name
    assert not [name for name in auth_env if name.startswith("MLFLOW_DB_")]
    assert not [name for name in env_of(container(objects)) if name.startswith("AUTH_DB_")]
    moved = env_of(container(render({"auth": {"database": {"existingSecret": "rds-mlflow-auth"}}}), "auth-config"))
    assert moved["AUTH_DB_PASSWORD"] == {"secretKeyRef": {"name": "rds-mlflow-auth", "key": "password"}}
    assert auth_env["AUTH_CONFIG_PATH"] == env_of(container(objects))["MLFLOW_AUTH_CONFIG_PATH"]
    script = objects["ConfigMap", "mlflow-auth-config"]["data"]["write-auth-config.py"]
    assert script == (CHART / "files" / "write-auth-config.py").read_text(encoding="utf-8")


def test_auth_config_lives_in_memory_and_root_fs_is_read_only() -> None:
    spec = pod_spec(render())
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["auth-config"]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes["tmp"]
    for c in spec["containers"] + spec["initContainers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001


def test_probes_use_the_health_endpoint_and_resources_come_from_values() -> None:
    resources = {"requests": {"cpu": "250m", "memory": "600Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    c = container(render({"resources": resources}))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"] == resources


def test_ingress_renders_host_tls_and_allowed_host() -> None:
    objects = render({"ingress": {"enabled": True, "host": "mlflow.example.org", "tlsSecret": "mlflow-tls"}})
    spec = objects["Ingress", "mlflow"]["spec"]
    assert spec["tls"] == [{"hosts": ["mlflow.example.org"], "secretName": "mlflow-tls"}]
    assert spec["rules"][0]["host"] == "mlflow.example.org"
    hosts = container(objects)["command"][-1].split(",")
    assert "mlflow.example.org" in hosts
    assert ("Ingress", "mlflow") not in render()


def test_ingress_without_host_is_refused_naming_the_key(tmp_path: Path) -> None:
    message = charts.rejection_message(CHART, {"ingress": {"enabled": True}}, tmp_path, release="mlflow")
    assert "ingress.host" in message


def _store_pods_and_policies() -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    """The Postgres and MinIO server pods' labels and policies, as their charts render them in the stack."""
    pods: dict[str, dict[str, str]] = {}
    policies: list[dict[str, Any]] = []
    for chart in ("postgres", "minio"):
        objects = charts.render_by_name(charts.REPO_ROOT / "charts" / chart, {}, namespace=NAMESPACE, release=chart)
        pods[chart] = objects["StatefulSet", chart]["spec"]["template"]["metadata"]["labels"]
        policies += [o for k, o in objects.items() if k[0] == "NetworkPolicy"]
    return pods, policies


def test_policy_matrix_clients_reach_the_server_and_the_server_reaches_only_its_stores() -> None:
    objects = render(WIRED)
    stores, store_policies = _store_pods_and_policies()
    policies = [o for k, o in objects.items() if k[0] == "NetworkPolicy"] + store_policies
    server = objects["Deployment", "mlflow"]["spec"]["template"]["metadata"]["labels"]
    stranger = {"app.kubernetes.io/name": "stranger"}
    assert connection_allowed(policies, CLIENT, server, 5000)
    assert not connection_allowed(policies, stranger, server, 5000)
    assert not connection_allowed(policies, CLIENT, server, 5432)
    # A labelled MLflow client gets nothing else from this chart: not the stores.
    assert not connection_allowed(policies, CLIENT, stores["postgres"], 5432)
    assert not connection_allowed(policies, CLIENT, stores["minio"], 9000)
    assert connection_allowed(policies, server, stores["postgres"], 5432)
    assert connection_allowed(policies, server, stores["minio"], 9000)
    assert not connection_allowed(policies, server, stores["minio"], 9001)
    assert not connection_allowed(policies, server, {"app.kubernetes.io/name": "kafka"}, 9092)


def test_without_the_store_client_labels_the_stores_refuse_the_server() -> None:
    objects = render({**WIRED, "podLabels": {}})
    stores, store_policies = _store_pods_and_policies()
    policies = [o for k, o in objects.items() if k[0] == "NetworkPolicy"] + store_policies
    server = objects["Deployment", "mlflow"]["spec"]["template"]["metadata"]["labels"]
    assert not connection_allowed(policies, server, stores["postgres"], 5432)
    assert not connection_allowed(policies, server, stores["minio"], 9000)


def test_schema_refuses_a_bad_permission_and_a_non_s3_destination(tmp_path: Path) -> None:
    message = charts.rejection_message(CHART, {"auth": {"defaultPermission": "ALL"}}, tmp_path, release="mlflow")
    assert "defaultPermission" in message
    message = charts.rejection_message(
        CHART, {"artifacts": {"destination": "/tmp/artifacts"}}, tmp_path, release="mlflow"
    )
    assert "destination" in message
