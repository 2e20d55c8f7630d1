"""infra/components/jupyterhub.py: the pure values builder, the config rules and the component under mocks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from qframe.research.settings import ResearchSettings

from infra.components.jupyterhub import (
    HUB_SECRET,
    ComputeAddresses,
    UserPlatform,
    build_values,
    user_environment,
    user_server_account,
    user_service_account,
)
from infra.config import StackConfig, StackConfigError, parse_raw_config
from infra.images import image_ref
from infra.offline import MOCK_SECRET_PREFIX, REPO_ROOT, load_stack_file, run_program
from infra.scope import Scope

pytestmark = pytest.mark.unit

DEV_STACK = REPO_ROOT / "Pulumi.dev.yaml"
LARGE_STACK = REPO_ROOT / "tests" / "fixtures" / "stacks" / "large.happy.yaml"
SECRET = "kubernetes:core/v1:Secret"
RELEASE = "kubernetes:helm.sh/v3:Release"
MINIO_PLATFORM = UserPlatform(
    namespace="qframe",
    lake_bucket="qframe-data-lake",
    object_store_endpoint="http://minio.qframe.svc:9000",
    object_store_secret="object-store-notebooks",
    mlflow=True,
    kafka_bootstrap="kafka.qframe.svc:9092",
)


def config(stack: str = "dev", **overrides: Any) -> StackConfig:
    raw = load_stack_file(DEV_STACK)
    for key, value in overrides.items():
        raw[f"qframe-research:{key}"] = json.dumps(value)
    return parse_raw_config(raw, stack=stack)


def values_of(cfg: StackConfig, platform: UserPlatform = MINIO_PLATFORM) -> dict[str, Any]:
    return build_values(
        scope=Scope.of(cfg),
        settings=cfg.jupyterhub,
        image=image_ref(cfg.images, "hub"),
        notebook_image=image_ref(cfg.images, "notebook"),
        platform=platform,
        hub_secret=HUB_SECRET,
        db_secret="postgres-jupyterhub",
    )


def test_the_hub_database_and_tokens_come_from_secrets_only() -> None:
    values = values_of(config())
    assert values["hub"]["db"] == {"existingSecret": "postgres-jupyterhub", "uriKey": "uri"}
    assert values["hub"]["existingSecret"] == "jupyterhub-hub"
    # Postgres for the hub database; MLflow for the users' accounts (MINIO_PLATFORM has MLflow on).
    assert values["hub"]["podLabels"] == {"qframe.io/postgres-client": "true", "qframe.io/mlflow-client": "true"}
    assert "postgresql://" not in json.dumps(values)


def test_users_env_points_at_the_platform_endpoints_with_the_names_settings_reads() -> None:
    env, secret_env = user_environment(MINIO_PLATFORM)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.qframe.svc:5000"
    assert env["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] == "false"
    assert env["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "false"
    assert env["QFRAME_LAKE_URL"] == "s3://qframe-data-lake/"
    assert env["QFRAME_S3_ENDPOINT_URL"] == "http://minio.qframe.svc:9000"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka.qframe.svc:9092"
    assert env["QFRAME_CATALOG_URL"].startswith("sqlite:////home/jovyan/")
    assert secret_env == [
        {"name": "AWS_ACCESS_KEY_ID", "secretName": "object-store-notebooks", "key": "access-key"},
        {"name": "AWS_SECRET_ACCESS_KEY", "secretName": "object-store-notebooks", "key": "secret-key"},
        {"name": "QFRAME_KAFKA_USERNAME", "secretName": "kafka-research", "key": "username"},
        {"name": "QFRAME_KAFKA_PASSWORD", "secretName": "kafka-research", "key": "password"},
    ]
    assert env["QFRAME_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.qframe.svc:9092"
    # Every QFRAME_* variable is one qframe.research.settings reads (a typo would be ignored silently).
    fields = {f"QFRAME_{name.upper()}" for name in ResearchSettings.model_fields}
    assert {name for name in env if name.startswith("QFRAME_")} <= fields
    assert ResearchSettings.from_env(env).s3_endpoint_url == "http://minio.qframe.svc:9000"


def test_users_reach_mlflow_the_object_store_and_kafka_but_not_postgres() -> None:
    labels = values_of(config())["singleuser"]["podLabels"]
    assert labels == {
        "qframe.io/object-store-client": "true",
        "qframe.io/mlflow-client": "true",
        "qframe.io/kafka-client": "true",
    }
    assert "qframe.io/postgres-client" not in labels


def test_without_mlflow_or_in_cluster_store_the_env_and_labels_shrink() -> None:
    platform = UserPlatform("qframe", "lake", None, None, mlflow=False, kafka_bootstrap=None)
    env, secret_env = user_environment(platform)
    assert "MLFLOW_TRACKING_URI" not in env
    assert "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD" not in env
    assert "QFRAME_S3_ENDPOINT_URL" not in env
    assert secret_env == []
    assert values_of(config(), platform)["singleuser"]["podLabels"] == {}


def test_profiles_become_cores_and_bytes() -> None:
    cfg = parse_raw_config(load_stack_file(LARGE_STACK), stack="large")
    gpu, small = values_of(cfg)["singleuser"]["profiles"]
    assert gpu["cpuGuarantee"] == 2.0
    assert gpu["memLimit"] == 16 * 2**30
    assert gpu["gpu"] == {"count": 1, "nodeSelector": {"qframe.io/gpu": "true"}, "tolerationKey": "nvidia.com/gpu"}
    assert small["default"] is True
    assert "gpu" not in small


def test_culler_timeout_and_storage_from_config() -> None:
    values = values_of(config(jupyterhub={"idleCullSeconds": 600, "userStorage": "7Gi"}))
    assert values["cull"] == {"enabled": True, "timeout": 600, "every": 150}
    assert values["singleuser"]["storage"]["size"] == "7Gi"


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_dummy_auth_outside_dev_is_refused_before_anything_registers(environment: str) -> None:
    with pytest.raises(pulumi.RunError) as info:
        run_program(DEV_STACK, overrides={"environment": environment})
    message = str(info.value)
    assert "qframe-research:jupyterhub.auth.kind" in message
    assert "environment: dev" in message
    assert info.value.program_run.resources == []  # type: ignore[attr-defined]


def test_oauth_kinds_need_their_settings_and_others_refuse_them() -> None:
    with pytest.raises(StackConfigError, match=r"jupyterhub.auth.oauth"):
        config(jupyterhub={"auth": {"kind": "github"}})
    oauth = {"callbackUrl": "https://h.example.com/cb", "authorizeUrl": "https://sso.example.com/a"}
    with pytest.raises(StackConfigError, match=r"jupyterhub.auth.oauth.tokenUrl = null: is required"):
        config(jupyterhub={"auth": {"kind": "generic-oauth", "oauth": oauth}})
    with pytest.raises(StackConfigError, match=r"jupyterhub.auth.oauth.authorizeUrl.*generic-oauth"):
        config(
            jupyterhub={
                "auth": {
                    "kind": "github",
                    "oauth": {"callbackUrl": "https://h.example.com/cb", "authorizeUrl": "https://x.example.com/a"},
                }
            }
        )
    with pytest.raises(StackConfigError, match=r"jupyterhub.auth.oauth.*read only by auth kinds"):
        config(jupyterhub={"auth": {"kind": "native", "oauth": {"callbackUrl": "https://h.example.com/cb"}}})


def test_the_component_generates_the_hub_secret_and_keeps_it_out_of_the_values() -> None:
    run = run_program(DEV_STACK)
    component = run.one("qframe:research:JupyterHub")
    secret = run.one(SECRET, "jupyterhub-hub")
    assert secret.parent == component.urn
    assert set(secret.inputs["stringData"]) == {"proxy-token", "cookie-secret", "dummy-password", "mlflow-user-key"}
    assert "stringData" in secret.secret_inputs
    release = run.one(RELEASE, "jupyterhub-release")
    assert release.parent == component.urn
    assert MOCK_SECRET_PREFIX not in json.dumps(release.inputs)
    assert release.inputs["values"]["auth"]["kind"] == "dummy"
    assert run.outputs["jupyterhub_url"] == "http://jupyterhub.qframe.svc:8000"


def test_no_dummy_password_without_dummy_auth_and_disabled_registers_nothing() -> None:
    native = run_program(DEV_STACK, overrides={"jupyterhub": {"auth": {"kind": "native"}}})
    assert set(native.one(SECRET, "jupyterhub-hub").inputs["stringData"]) == {
        "proxy-token",
        "cookie-secret",
        "mlflow-user-key",
    }
    off = run_program(DEV_STACK, overrides={"jupyterhub": {"enabled": False}})
    assert off.of_type("qframe:research:JupyterHub") == []
    assert "jupyterhub_url" not in off.outputs


def test_users_get_mlflow_only_when_the_stack_deploys_it() -> None:
    on = run_program(DEV_STACK).one(RELEASE, "jupyterhub-release").inputs["values"]["singleuser"]
    assert on["env"]["MLFLOW_TRACKING_URI"] == "http://mlflow.qframe.svc:5000"
    assert on["podLabels"]["qframe.io/mlflow-client"] == "true"
    off_run = run_program(DEV_STACK, overrides={"mlflow": {"enabled": False}})
    off = off_run.one(RELEASE, "jupyterhub-release").inputs["values"]["singleuser"]
    assert "MLFLOW_TRACKING_URI" not in off["env"]
    assert "qframe.io/mlflow-client" not in off["podLabels"]


def test_every_user_gets_an_mlflow_account_only_where_mlflow_runs() -> None:
    """The hub creates the users' MLflow accounts as MLflow's admin (its Secret, its configured name)."""
    run = run_program(DEV_STACK, overrides={"mlflow": {"auth": {"adminUsername": "root"}}})
    values = run.one(RELEASE, "jupyterhub-release").inputs["values"]
    assert values["mlflow"] == {
        "enabled": True,
        "url": "http://mlflow.qframe.svc:5000",
        "adminUsername": "root",
        "adminSecret": "mlflow-auth",
        "userSecretPrefix": "mlflow-user-",
    }
    assert values["hub"]["podLabels"]["qframe.io/mlflow-client"] == "true"
    # The hub waits for MLflow (its admin Secret) as well.
    waits_for = run.one("qframe:research:JupyterHub").depends_on
    assert any("qframe:research:Mlflow$kubernetes:core/v1:Secret::mlflow-auth" in urn for urn in waits_for)
    off = run_program(DEV_STACK, overrides={"mlflow": {"enabled": False}})
    off_values = off.one(RELEASE, "jupyterhub-release").inputs["values"]
    assert off_values["mlflow"]["enabled"] is False
    assert "qframe.io/mlflow-client" not in off_values["hub"]["podLabels"]
    assert "mlflow-user-key" not in off.one(SECRET, "jupyterhub-hub").inputs["stringData"]


def test_one_account_for_user_servers_and_api_access_only_with_dask() -> None:
    assert user_server_account(dask=True, workload_identity=True) == "dask-users"
    assert user_server_account(dask=True, workload_identity=False) == "dask-users"
    assert user_server_account(dask=False, workload_identity=True) == "notebooks"
    assert user_server_account(dask=False, workload_identity=False) == ""
    base = UserPlatform(
        namespace="ns",
        lake_bucket="lake",
        object_store_endpoint=None,
        object_store_secret=None,
        mlflow=False,
        kafka_bootstrap=None,
    )
    with_dask = UserPlatform(**{**base.__dict__, "compute": ComputeAddresses(dask_scheduler="tcp://s:8786")})
    irsa_only = UserPlatform(**{**base.__dict__, "workload_identity": True})
    assert user_service_account(base) == {"serviceAccount": "", "serviceAccountPurpose": ""}
    # IRSA alone needs no Kubernetes API: no purpose, so the chart mounts no token and opens no egress.
    assert user_service_account(irsa_only) == {"serviceAccount": "notebooks", "serviceAccountPurpose": ""}
    dask = user_service_account(with_dask)
    assert dask["serviceAccount"] == "dask-users"
    assert "KubeCluster" in dask["serviceAccountPurpose"]
