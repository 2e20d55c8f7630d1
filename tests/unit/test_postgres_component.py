"""infra/components/postgres/in_cluster.py: the pure values builder and the component under Pulumi mocks."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from infra.components.postgres import CONSUMERS, consumer_secret_name
from infra.components.postgres.in_cluster import InClusterPostgres, InClusterPostgresArgs, build_values
from infra.config import StackConfig, parse_raw_config
from infra.image_tags import IMAGE_TAGS
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


def postgres_values(cfg: StackConfig, *, superuser_secret: str, consumer_secrets: dict[str, str]) -> dict[str, Any]:
    return build_values(
        scope=Scope.of(cfg),
        settings=cfg.postgres.in_cluster,
        image=image_ref(cfg.images, "postgres"),
        superuser_secret=superuser_secret,
        consumer_secrets=consumer_secrets,
    )


def consumer_secrets() -> dict[str, str]:
    return {name: consumer_secret_name(name) for name in CONSUMERS}


def test_build_values_from_the_dev_stack() -> None:
    cfg = dev_config()
    values = postgres_values(cfg, superuser_secret="postgres-superuser", consumer_secrets=consumer_secrets())
    assert values["auth"] == {
        "existingSecret": "postgres-superuser",
        "secretKey": "postgres-password",
        "username": "postgres",
        "allowedCIDRs": ["10.244.0.0/16"],
    }
    assert values["consumers"] == [
        {"name": "mlflow", "existingSecret": "postgres-mlflow"},
        {"name": "catalog", "existingSecret": "postgres-catalog"},
        {"name": "jupyterhub", "existingSecret": "postgres-jupyterhub"},
        # The consumer's Secret keeps its Kubernetes name; its database and role are identifiers.
        {"name": "mlflow_auth", "existingSecret": "postgres-mlflow-auth"},
    ]
    assert values["persistence"] == {"size": "5Gi"}
    assert values["image"] == {
        "repository": "qframe/postgres",
        "tag": IMAGE_TAGS["postgres"],
        "digest": "",
        "pullPolicy": "IfNotPresent",
    }
    assert values["resources"] == cfg.postgres.in_cluster.resources.model_dump()
    assert values["commonLabels"]["team"] == "research"
    assert values["networkPolicy"]["allowedClients"] == [
        {"podSelector": {"matchLabels": {"qframe.io/postgres-client": "true"}}}
    ]


def test_build_values_follow_the_stack_config() -> None:
    cfg = dev_config(
        postgres={"kind": "in-cluster", "inCluster": {"storage": "20Gi", "podNetworks": ["10.42.0.0/16", "fd00::/48"]}},
        images={"registry": "registry.example.com/qframe", "tags": {"postgres": "sha256:" + "a" * 64}},
    )
    values = postgres_values(cfg, superuser_secret="root", consumer_secrets={"mlflow": "m"})
    assert values["persistence"]["size"] == "20Gi"
    assert values["image"]["repository"] == "registry.example.com/qframe/postgres"
    assert values["image"]["digest"] == "sha256:" + "a" * 64
    assert values["consumers"] == [{"name": "mlflow", "existingSecret": "m"}]
    assert values["auth"]["allowedCIDRs"] == ["10.42.0.0/16", "fd00::/48"]


def test_protect_stateful_protects_the_release_and_the_secrets() -> None:
    protected = run_program(DEV_STACK, program=_program, overrides={"protectStateful": "true"})
    for resource in [*protected.of_type(SECRET), *protected.of_type(RELEASE), *protected.of_type(DYNAMIC_RESOURCE)]:
        assert resource.protect, resource.name


def _program() -> None:
    cfg = load_stack_config()
    pg = InClusterPostgres(
        "postgres",
        InClusterPostgresArgs(
            namespace=pulumi.Output.from_input(cfg.namespace),
            scope=Scope.of(cfg),
            settings=cfg.postgres.in_cluster,
            image=image_ref(cfg.images, "postgres"),
        ),
    )
    pulumi.export("host", pg.host)
    pulumi.export("port", pg.port)
    pulumi.export("superuser_secret", pg.superuser_secret)
    pulumi.export("connection_secrets", pg.connection_secrets)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(DEV_STACK, program=_program)


def test_component_registers_four_generated_passwords(run: ProgramRun) -> None:
    passwords = run.of_type(DYNAMIC_RESOURCE)
    assert sorted(p.name for p in passwords) == sorted(
        ["postgres-superuser-password", *(f"postgres-{c}-password" for c in CONSUMERS)]
    )
    component = run.one("qframe:data:Postgres", "postgres")
    assert all(p.parent == component.urn for p in passwords)


def test_superuser_secret_holds_the_generated_password(run: ProgramRun) -> None:
    secret = run.one(SECRET, "postgres-superuser")
    assert secret.inputs["metadata"]["name"] == "postgres-superuser"
    assert secret.inputs["metadata"]["namespace"] == "qframe"
    assert secret.inputs["stringData"] == {"postgres-password": f"{MOCK_SECRET_PREFIX}postgres-superuser-password"}
    assert "stringData" in secret.secret_inputs


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_consumer_secret_holds_a_ready_to_use_uri(run: ProgramRun, consumer: str) -> None:
    secret = run.one(SECRET, f"postgres-{consumer}")
    assert secret.inputs["metadata"]["name"] == f"postgres-{consumer}"
    password = f"{MOCK_SECRET_PREFIX}postgres-{consumer}-password"
    role = consumer.replace("-", "_")  # mlflow-auth: Secret postgres-mlflow-auth, database and role mlflow_auth
    assert secret.inputs["stringData"] == {
        "username": role,
        "password": password,
        "database": role,
        "host": "postgres.qframe.svc",
        "port": "5432",
        "uri": f"postgresql://{role}:{password}@postgres.qframe.svc:5432/{role}",
    }
    assert "stringData" in secret.secret_inputs
    assert secret.inputs["metadata"]["labels"]["app.kubernetes.io/name"] == "postgres"


def test_release_installs_the_local_chart_after_the_secrets(run: ProgramRun) -> None:
    release = run.one(RELEASE, "postgres-release")
    assert not release.protect
    assert release.inputs["name"] == "postgres"
    assert release.inputs["chart"].endswith("charts/postgres")
    assert release.inputs["namespace"] == "qframe"
    assert release.inputs["cleanupOnFail"] is True
    assert release.inputs["maxHistory"] == 5
    secret_urns = {s.urn for s in run.of_type(SECRET)}
    assert secret_urns <= set(release.depends_on)
    assert release.inputs["values"]["auth"]["existingSecret"] == "postgres-superuser"


def test_no_generated_password_reaches_the_release(run: ProgramRun) -> None:
    release = run.one(RELEASE, "postgres-release")
    assert MOCK_SECRET_PREFIX not in json.dumps(release.inputs)
    assert release.secret_inputs == frozenset()


def test_generated_passwords_appear_only_in_secrets(run: ProgramRun) -> None:
    for resource in run.resources:
        if resource.type in (SECRET, DYNAMIC_RESOURCE):
            continue
        assert MOCK_SECRET_PREFIX not in json.dumps(resource.inputs), resource.name


def test_stack_outputs(run: ProgramRun) -> None:
    assert run.outputs["host"] == "postgres.qframe.svc"
    assert run.outputs["port"] == 5432
    assert run.outputs["superuser_secret"] == "postgres-superuser"
    assert run.outputs["connection_secrets"] == {c: f"postgres-{c}" for c in CONSUMERS}


def test_stack_outputs_holding_secrets_are_secret(run: ProgramRun) -> None:
    for key, value in run.outputs.items():
        if MOCK_SECRET_PREFIX in json.dumps(value, default=str):
            assert key in run.secret_outputs, f"output {key} carries a password in plain text"
    # None of the published outputs is a credential: consumers get passwords only through Secrets.
    assert not run.secret_outputs


def test_component_outputs_are_registered(run: ProgramRun) -> None:
    component = run.one("qframe:data:Postgres", "postgres")
    assert component.custom is False
    children = [r for r in run.resources if r.parent == component.urn]
    assert {r.type for r in children} == {DYNAMIC_RESOURCE, SECRET, RELEASE}
    assert all(r.name.startswith("postgres-") for r in children)
