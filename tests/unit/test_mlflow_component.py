"""infra/components/mlflow.py: the pure values builder and the component in the whole program, under mocks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components.mlflow import (
    AUTH_SECRET,
    CLIENT_LABEL,
    ArtifactStore,
    Database,
    artifact_store_for,
    build_values,
    database_for,
)
from infra.config import StackConfig, parse_raw_config
from infra.images import image_ref
from infra.offline import DYNAMIC_RESOURCE, MOCK_SECRET_PREFIX, REPO_ROOT, ProgramRun, load_stack_file, run_program
from infra.scope import Scope

pytestmark = pytest.mark.unit

DEV_STACK = REPO_ROOT / "Pulumi.dev.yaml"
AWS_STACK = REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws.happy.yaml"
SECRET = "kubernetes:core/v1:Secret"
RELEASE = "kubernetes:helm.sh/v3:Release"


def dev_config(**overrides: Any) -> StackConfig:
    raw = load_stack_file(DEV_STACK)
    for key, value in overrides.items():
        raw[f"qframe-research:{key}"] = json.dumps(value)
    return parse_raw_config(raw, stack="dev")


def values_for(cfg: StackConfig, database: Database, artifacts: ArtifactStore) -> dict[str, Any]:
    return build_values(
        scope=Scope.of(cfg),
        settings=cfg.mlflow,
        image=image_ref(cfg.images, "mlflow"),
        database=database,
        artifacts=artifacts,
        auth_secret=AUTH_SECRET,
    )


IN_CLUSTER_DB = database_for(in_cluster_postgres=True)
MINIO = artifact_store_for(kind="minio", bucket="qframe-mlflow-artifacts", namespace="qframe", region="")


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_program(DEV_STACK)


@pytest.fixture(scope="module")
def aws() -> ProgramRun:
    return run_program(AWS_STACK)


def release_values(run: ProgramRun) -> dict[str, Any]:
    values = run.one(RELEASE, "mlflow-release").inputs["values"]
    assert isinstance(values, dict)
    return values


def test_database_and_artifact_settings_reach_the_chart_only_as_secret_names() -> None:
    values = values_for(dev_config(), IN_CLUSTER_DB, MINIO)
    assert values["backendStore"] == {"existingSecret": "postgres-mlflow", "sslMode": "disable"}
    assert values["artifacts"] == {
        "destination": "s3://qframe-mlflow-artifacts",
        "s3": {
            "endpointUrl": "http://minio.qframe.svc:9000",
            "existingSecret": "object-store-mlflow",
            "region": "us-east-1",
        },
    }
    assert values["auth"]["existingSecret"] == "mlflow-auth"
    text = json.dumps(values)
    assert "postgresql" not in text  # no URI assembled outside the pod
    assert "password" not in text.lower()


def test_settings_follow_the_stack_config() -> None:
    cfg = dev_config(
        mlflow={
            "replicas": 2,
            "workers": 3,
            "metrics": False,
            "auth": {"adminUsername": "root", "defaultPermission": "NO_PERMISSIONS"},
            "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
            "ingress": {"host": "mlflow.example.com", "tlsSecret": "mlflow-tls", "className": "nginx"},
        }
    )
    values = values_for(cfg, IN_CLUSTER_DB, MINIO)
    assert values["replicas"] == 2
    assert values["server"] == {"workers": 3}
    assert values["metrics"] == {"enabled": False}
    assert values["auth"] == {
        "existingSecret": "mlflow-auth",
        "adminUsername": "root",
        "defaultPermission": "NO_PERMISSIONS",
        # The auth app's own database (issue 12), named by its consumer Secret only.
        "database": {"existingSecret": "postgres-mlflow-auth"},
    }
    assert values["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert values["ingress"] == {
        "enabled": True,
        "host": "mlflow.example.com",
        "tlsSecret": "mlflow-tls",
        "className": "nginx",
    }
    assert values_for(dev_config(), IN_CLUSTER_DB, MINIO)["ingress"]["enabled"] is False


def test_in_cluster_stores_carry_their_client_labels_and_egress_to_exactly_them() -> None:
    values = values_for(dev_config(), IN_CLUSTER_DB, MINIO)
    assert values["podLabels"] == {"qframe.io/postgres-client": "true", "qframe.io/object-store-client": "true"}
    assert values["networkPolicy"]["allowedClients"] == [{"podSelector": {"matchLabels": CLIENT_LABEL}}]
    postgres, store = values["networkPolicy"]["egress"]
    assert postgres["ports"] == [5432]
    assert postgres["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "postgres"
    assert store["ports"] == [9000]
    assert store["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "minio"


def test_aws_stack_uses_tls_the_iam_role_and_port_only_egress(aws: ProgramRun) -> None:
    values = release_values(aws)
    assert values["backendStore"] == {"existingSecret": "postgres-mlflow", "sslMode": "require"}
    assert values["artifacts"]["s3"]["existingSecret"] == ""
    assert values["artifacts"]["s3"]["endpointUrl"] == ""
    assert values["podLabels"] == {}
    assert [rule["ports"] for rule in values["networkPolicy"]["egress"]] == [[5432], [443]]


def test_auth_secret_holds_generated_admin_password_and_flask_key(dev: ProgramRun) -> None:
    secret = dev.one(SECRET, "mlflow-auth")
    assert secret.inputs["metadata"]["name"] == AUTH_SECRET
    assert secret.inputs["stringData"] == {
        "admin-password": f"{MOCK_SECRET_PREFIX}mlflow-admin-password",
        "flask-secret-key": f"{MOCK_SECRET_PREFIX}mlflow-flask-secret-key",
    }
    assert "stringData" in secret.secret_inputs
    component = dev.one("qframe:research:Mlflow", "mlflow")
    passwords = [p for p in dev.of_type(DYNAMIC_RESOURCE) if p.name.startswith("mlflow-")]
    assert sorted(p.name for p in passwords) == ["mlflow-admin-password", "mlflow-flask-secret-key"]
    assert all(p.parent == component.urn for p in passwords)


def test_release_installs_the_local_chart_after_its_secret_and_the_stores(dev: ProgramRun) -> None:
    release = dev.one(RELEASE, "mlflow-release")
    assert release.inputs["name"] == "mlflow"
    assert release.inputs["chart"].endswith("charts/mlflow")
    assert release.inputs["values"]["image"]["repository"] == "qframe/mlflow"
    depends = set(release.depends_on)
    assert dev.one(SECRET, "mlflow-auth").urn in depends
    # The stores' components expand to their children: their Secrets and releases come first.
    assert dev.one(SECRET, "postgres-mlflow").urn in depends
    assert dev.one(RELEASE, "postgres-release").urn in depends
    assert dev.one(SECRET, "object-store-mlflow").urn in depends
    assert dev.one(RELEASE, "object-store-release").urn in depends
    assert MOCK_SECRET_PREFIX not in json.dumps(release.inputs)
    assert release.secret_inputs == frozenset()


def test_stack_outputs(dev: ProgramRun) -> None:
    assert dev.outputs["mlflow_tracking_uri"] == "http://mlflow.qframe.svc:5000"
    assert dev.outputs["mlflow_auth_secret"] == "mlflow-auth"


def test_disabled_mlflow_registers_nothing_of_it() -> None:
    run = run_program(DEV_STACK, overrides={"mlflow": {"enabled": False}})
    assert not [r for r in run.resources if r.name.startswith("mlflow")]
    assert "mlflow_tracking_uri" not in run.outputs
