"""infra/components/object_store/minio.py: the pure values builder and the component under Pulumi mocks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from infra.components.object_store import consumer_secret_name
from infra.components.object_store.minio import CONSUMERS, MinioObjectStore, MinioObjectStoreArgs, build_values
from infra.config import StackConfig, parse_raw_config
from infra.images import image_ref
from infra.offline import DYNAMIC_RESOURCE, MOCK_SECRET_PREFIX, REPO_ROOT, ProgramRun, load_stack_file, run_program
from infra.program import load_stack_config
from infra.scope import Scope

pytestmark = pytest.mark.unit

DEV_STACK = REPO_ROOT / "Pulumi.dev.yaml"
SECRET = "kubernetes:core/v1:Secret"
RELEASE = "kubernetes:helm.sh/v3:Release"


def dev_config(**overrides: Any) -> StackConfig:
    raw = load_stack_file(DEV_STACK)
    for key, value in overrides.items():
        raw[f"qframe-research:{key}"] = json.dumps(value)
    return parse_raw_config(raw, stack="dev")


def build_minio_values(cfg: StackConfig, *, root_secret: str, consumer_secrets: dict[str, str]) -> dict[str, Any]:
    return build_values(
        scope=Scope.of(cfg),
        buckets=cfg.object_store.buckets,
        settings=cfg.object_store.minio,
        image=image_ref(cfg.images, "minio"),
        init_image=image_ref(cfg.images, "tools"),
        root_secret=root_secret,
        consumer_secrets=consumer_secrets,
    )


def minio_args(cfg: StackConfig) -> MinioObjectStoreArgs:
    return MinioObjectStoreArgs(
        namespace=pulumi.Output.from_input(cfg.namespace),
        scope=Scope.of(cfg),
        buckets=cfg.object_store.buckets,
        settings=cfg.object_store.minio,
        image=image_ref(cfg.images, "minio"),
        init_image=image_ref(cfg.images, "tools"),
    )


def test_build_values_from_the_dev_stack() -> None:
    cfg = dev_config()
    secrets = {name: consumer_secret_name(name) for name in CONSUMERS}
    values = build_minio_values(cfg, root_secret="minio-root", consumer_secrets=secrets)
    assert values["auth"] == {"existingSecret": "minio-root"}
    assert values["buckets"] == ["qframe-data-lake", "qframe-mlflow-artifacts"]
    assert values["consumers"] == [
        {
            "name": "mlflow",
            "existingSecret": "object-store-mlflow",
            "buckets": ["qframe-mlflow-artifacts"],
            "access": "readwrite",
        },
        {
            "name": "research",
            "existingSecret": "object-store-research",
            "buckets": ["qframe-data-lake"],
            "access": "readwrite",
        },
        {
            "name": "notebooks",
            "existingSecret": "object-store-notebooks",
            "buckets": ["qframe-data-lake"],
            "access": "readwrite",
        },
    ]
    assert values["persistence"] == {"size": "10Gi"}
    assert values["image"]["repository"] == "qframe/minio"
    assert values["initJob"]["image"]["repository"] == "qframe/tools"
    assert values["networkPolicy"]["allowedClients"] == [
        {"podSelector": {"matchLabels": {"qframe.io/object-store-client": "true"}}}
    ]


def test_build_values_follow_the_stack_config() -> None:
    cfg = dev_config(
        objectStore={
            "kind": "minio",
            "buckets": {"dataLake": "lake-x", "mlflowArtifacts": "art-x"},
            "minio": {"storage": "50Gi"},
        }
    )
    values = build_minio_values(cfg, root_secret="r", consumer_secrets={"research": "s"})
    assert values["buckets"] == ["lake-x", "art-x"]
    assert values["consumers"][0]["buckets"] == ["lake-x"]
    assert values["persistence"]["size"] == "50Gi"


def _program() -> None:
    cfg = load_stack_config()
    store = MinioObjectStore("object-store", minio_args(cfg))
    pulumi.export("endpoint", store.endpoint)
    pulumi.export("buckets", store.buckets)
    pulumi.export("credentials_secrets", store.credentials_secrets)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(DEV_STACK, program=_program)


def test_generated_secrets_are_children_of_the_component(run: ProgramRun) -> None:
    passwords = run.of_type(DYNAMIC_RESOURCE)
    assert sorted(p.name for p in passwords) == sorted(
        ["object-store-root-password", *(f"object-store-{c}-secret-key" for c in CONSUMERS)]
    )
    component = run.one("qframe:data:ObjectStore", "object-store")
    assert all(p.parent == component.urn for p in passwords)


def test_root_secret_holds_the_generated_password(run: ProgramRun) -> None:
    secret = run.one(SECRET, "object-store-root")
    assert secret.inputs["metadata"]["name"] == "minio-root"
    assert secret.inputs["metadata"]["namespace"] == "qframe"
    assert secret.inputs["stringData"] == {
        "root-user": "qframe-root",
        "root-password": f"{MOCK_SECRET_PREFIX}object-store-root-password",
    }
    assert "stringData" in secret.secret_inputs


def test_consumer_secrets_hold_keys_endpoint_and_buckets(run: ProgramRun) -> None:
    mlflow = run.one(SECRET, "object-store-mlflow")
    assert mlflow.inputs["metadata"]["name"] == "object-store-mlflow"
    assert mlflow.inputs["stringData"] == {
        "access-key": "mlflow-qframe",
        "secret-key": f"{MOCK_SECRET_PREFIX}object-store-mlflow-secret-key",
        "endpoint": "http://minio.qframe.svc:9000",
        "bucket-mlflow-artifacts": "qframe-mlflow-artifacts",
    }
    assert "stringData" in mlflow.secret_inputs
    research = run.one(SECRET, "object-store-research")
    assert research.inputs["stringData"]["bucket-data-lake"] == "qframe-data-lake"
    assert "stringData" in research.secret_inputs


def test_release_installs_the_local_chart_after_the_secrets(run: ProgramRun) -> None:
    release = run.one(RELEASE, "object-store-release")
    assert release.inputs["name"] == "minio"
    assert release.inputs["chart"].endswith("charts/minio")
    assert release.inputs["namespace"] == "qframe"
    assert {s.urn for s in run.of_type(SECRET)} <= set(release.depends_on)
    assert MOCK_SECRET_PREFIX not in json.dumps(release.inputs)
    assert release.secret_inputs == frozenset()


def test_generated_secrets_appear_only_in_secrets(run: ProgramRun) -> None:
    for resource in run.resources:
        if resource.type in (SECRET, DYNAMIC_RESOURCE):
            continue
        assert MOCK_SECRET_PREFIX not in json.dumps(resource.inputs), resource.name


def test_stack_outputs(run: ProgramRun) -> None:
    assert run.outputs["endpoint"] == "http://minio.qframe.svc:9000"
    assert run.outputs["buckets"] == {"data_lake": "qframe-data-lake", "mlflow_artifacts": "qframe-mlflow-artifacts"}
    assert run.outputs["credentials_secrets"] == {
        "mlflow": "object-store-mlflow",
        "research": "object-store-research",
        "notebooks": "object-store-notebooks",
    }
    assert not run.secret_outputs


def test_protect_stateful_protects_the_release_and_the_secrets() -> None:
    protected = run_program(DEV_STACK, program=_program, overrides={"protectStateful": "true"})
    for resource in [*protected.of_type(SECRET), *protected.of_type(RELEASE), *protected.of_type(DYNAMIC_RESOURCE)]:
        assert resource.protect, resource.name
