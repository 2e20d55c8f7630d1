"""infra/components/kafka.py: the pure values builder, the cluster id, and the component under mocks."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from infra.components.kafka import (
    CLIENT_LABEL,
    CONSUMERS,
    Kafka,
    KafkaArgs,
    build_auth_users,
    kraft_cluster_id,
    security_protocol,
)
from infra.components.kafka import build_values as build_kafka_values
from infra.config import PROJECT, StackConfig, parse_raw_config
from infra.image_tags import IMAGE_TAGS
from infra.images import image_ref
from infra.offline import DYNAMIC_RESOURCE, MOCK_SECRET_PREFIX, REPO_ROOT, ProgramRun, load_stack_file, run_program
from infra.program import load_stack_config
from infra.scope import Scope

pytestmark = pytest.mark.unit

DEV_STACK = REPO_ROOT / "Pulumi.dev.yaml"
LARGE_STACK = REPO_ROOT / "tests" / "fixtures" / "stacks" / "large.happy.yaml"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
CLUSTER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def stack(name: str) -> StackConfig:
    file = {"dev": DEV_STACK, "large": LARGE_STACK}[name]
    return parse_raw_config(load_stack_file(file), stack=name)


def build_values(cfg: StackConfig, *, cluster_id: str) -> dict[str, Any]:
    return build_kafka_values(
        scope=Scope.of(cfg),
        settings=cfg.kafka,
        image=image_ref(cfg.images, "kafka"),
        init_image=image_ref(cfg.images, "tools"),
        cluster_id=cluster_id,
    )


# ---------------------------------------------------------------------------------------------
# kraft_cluster_id
# ---------------------------------------------------------------------------------------------


def test_cluster_id_is_deterministic_and_22_url_safe_chars_of_16_bytes() -> None:
    first = kraft_cluster_id(PROJECT, "dev", "qframe")
    assert first == kraft_cluster_id(PROJECT, "dev", "qframe")
    assert CLUSTER_ID.match(first), first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_cluster_id_differs_per_stack_and_namespace() -> None:
    ids = {
        kraft_cluster_id(PROJECT, "dev", "qframe"),
        kraft_cluster_id(PROJECT, "prod", "qframe"),
        kraft_cluster_id(PROJECT, "dev", "other"),
        kraft_cluster_id("another-project", "dev", "qframe"),
    }
    assert len(ids) == 4


# ---------------------------------------------------------------------------------------------
# build_values
# ---------------------------------------------------------------------------------------------


def test_dev_values() -> None:
    cfg = stack("dev")
    values = build_values(cfg, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    assert values["replicas"] == 1
    assert values["clusterId"] == "AAAAAAAAAAAAAAAAAAAAAA"
    assert values["image"] == {
        "repository": "qframe/kafka",
        "tag": IMAGE_TAGS["kafka"],
        "digest": "",
        "pullPolicy": "IfNotPresent",
    }
    assert values["initJob"]["image"] == {
        "repository": "qframe/tools",
        "tag": IMAGE_TAGS["tools"],
        "digest": "",
        "pullPolicy": "IfNotPresent",
    }
    assert values["persistence"] == {"size": "5Gi", "storageClassName": ""}
    assert values["resources"] == {
        "requests": {"cpu": "200m", "memory": "768Mi"},
        "limits": {"cpu": "1", "memory": "1536Mi"},
    }
    assert values["heapOpts"] == "-Xms768m -Xmx768m"
    assert values["commonLabels"] == {"team": "research", "qframe.io/stack-namespace": "qframe"}
    assert values["topics"] == [
        {"name": "market-data.1m", "partitions": 3, "replicationFactor": 1, "retentionMs": 72 * 3_600_000},
        {"name": "market-data.1h", "partitions": 3, "replicationFactor": 1, "retentionMs": 720 * 3_600_000},
        {"name": "market-data.1d", "partitions": 1, "replicationFactor": 1, "retentionMs": -1},
    ]
    assert values["networkPolicy"]["allowedClients"] == [{"podSelector": {"matchLabels": CLIENT_LABEL}}]


def test_large_stack_values_have_three_brokers_and_replication_three() -> None:
    cfg = stack("large")
    values = build_values(cfg, cluster_id=kraft_cluster_id(PROJECT, "large", cfg.namespace))
    assert values["replicas"] == 3
    assert values["persistence"]["size"] == "100Gi"
    assert values["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert values["heapOpts"] == "-Xms2048m -Xmx2048m"
    # Default topics (the stack names none): replication factor min(3, replicas).
    assert [t["replicationFactor"] for t in values["topics"]] == [3, 3, 3]
    assert CLUSTER_ID.match(values["clusterId"])


def test_auth_values_name_secrets_and_give_each_consumer_exactly_its_side() -> None:
    cfg = stack("dev")
    values = build_values(cfg, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    topics = ["market-data.1m", "market-data.1h", "market-data.1d"]
    assert values["auth"] == {
        "mechanism": "SCRAM-SHA-512",
        "brokerSecret": "kafka-broker",
        "adminSecret": "kafka-admin",
        "users": [
            {"name": "ingestion", "existingSecret": "kafka-ingestion", "write": topics, "read": [], "groupPrefix": ""},
            {
                "name": "research",
                "existingSecret": "kafka-research",
                "write": [],
                "read": topics,
                "groupPrefix": "research",
            },
        ],
    }
    assert values["podAntiAffinity"] == "preferred"
    assert values["tls"] == {"existingSecret": ""}


def test_a_tls_secret_turns_the_listener_and_the_consumers_protocol_to_sasl_ssl() -> None:
    cfg = StackConfig.model_validate({"kafka": {"tlsSecret": "kafka-tls"}})
    assert build_values(cfg, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")["tls"] == {"existingSecret": "kafka-tls"}
    assert security_protocol(cfg.kafka) == "SASL_SSL"
    assert security_protocol(stack("dev").kafka) == "SASL_PLAINTEXT"


def test_acls_follow_the_stacks_topics_and_anti_affinity_its_setting() -> None:
    cfg = StackConfig.model_validate(
        {"kafka": {"replicas": 3, "podAntiAffinity": "required", "topics": [{"name": "ticks", "partitions": 6}]}}
    )
    values = build_values(cfg, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    assert values["podAntiAffinity"] == "required"
    assert [(u["write"], u["read"]) for u in values["auth"]["users"]] == [(["ticks"], []), ([], ["ticks"])]
    assert build_auth_users(cfg.kafka) == values["auth"]["users"]


def test_image_digest_is_kept_as_a_digest() -> None:
    digest = "sha256:" + "a" * 64
    cfg = StackConfig.model_validate({"images": {"registry": "reg.local:5000/qframe", "tags": {"kafka": digest}}})
    values = build_values(cfg, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    assert values["image"]["repository"] == "reg.local:5000/qframe/kafka"
    assert values["image"]["digest"] == digest


# ---------------------------------------------------------------------------------------------
# The component under the mock harness
# ---------------------------------------------------------------------------------------------


def _program() -> None:
    cfg = load_stack_config()
    provider = k8s.Provider("k8s")
    kafka = Kafka(
        "kafka",
        KafkaArgs(
            namespace=pulumi.Output.from_input(cfg.namespace),
            scope=Scope.of(cfg),
            settings=cfg.kafka,
            image=image_ref(cfg.images, "kafka"),
            init_image=image_ref(cfg.images, "tools"),
        ),
        opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )
    pulumi.export("bootstrap_servers", kafka.bootstrap_servers)
    pulumi.export("service_name", kafka.service_name)
    pulumi.export("topics", kafka.topics)
    pulumi.export("credentials_secrets", kafka.credentials_secrets)


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return run_program(DEV_STACK, program=_program)


def test_component_registers_one_release_under_itself(dev_run: ProgramRun) -> None:
    component = dev_run.one("qframe:data:Kafka", "kafka")
    release = dev_run.one(RELEASE, "kafka-release")
    assert release.parent == component.urn
    assert not release.protect  # dev: protectStateful is false


def test_release_inputs(dev_run: ProgramRun) -> None:
    inputs = dev_run.one(RELEASE, "kafka-release").inputs
    assert inputs["name"] == "kafka"
    assert inputs["chart"].endswith("charts/kafka")
    assert not inputs["chart"].startswith("/")  # relative: state does not depend on the clone path
    assert inputs["namespace"] == "qframe"
    assert inputs["cleanupOnFail"] is True
    assert inputs["maxHistory"] == 5
    expected = build_values(stack("dev"), cluster_id=kraft_cluster_id(PROJECT, "dev", "qframe"))
    assert inputs["values"] == expected


def test_outputs(dev_run: ProgramRun) -> None:
    assert dev_run.outputs["bootstrap_servers"] == "kafka.qframe.svc:9092"
    assert dev_run.outputs["service_name"] == "kafka"
    assert dev_run.outputs["topics"] == ["market-data.1m", "market-data.1h", "market-data.1d"]
    # Secret names only: the passwords never leave the Secrets.
    assert dev_run.outputs["credentials_secrets"] == {"ingestion": "kafka-ingestion", "research": "kafka-research"}
    assert not dev_run.secret_outputs


def test_cluster_id_is_stable_across_runs(dev_run: ProgramRun) -> None:
    again = run_program(DEV_STACK, program=_program)
    first = dev_run.one(RELEASE, "kafka-release").inputs["values"]["clusterId"]
    assert again.one(RELEASE, "kafka-release").inputs["values"]["clusterId"] == first
    assert CLUSTER_ID.match(first)


def test_large_stack_protects_the_release_and_runs_three_brokers() -> None:
    run = run_program(LARGE_STACK, program=_program)
    release = run.one(RELEASE, "kafka-release")
    assert release.protect is True
    assert release.inputs["values"]["replicas"] == 3
    assert release.inputs["namespace"] == "qframe"


def test_one_generated_password_and_secret_per_user(dev_run: ProgramRun) -> None:
    component = dev_run.one("qframe:data:Kafka", "kafka")
    users = ["broker", "admin", *CONSUMERS]
    passwords = dev_run.of_type(DYNAMIC_RESOURCE)
    assert sorted(p.name for p in passwords) == sorted(f"kafka-{u}-password" for u in users)
    assert all(p.parent == component.urn for p in passwords)
    for user in users:
        secret = dev_run.one(SECRET, f"kafka-{user}")
        assert secret.inputs["metadata"]["name"] == f"kafka-{user}"
        assert "stringData" in secret.secret_inputs
        data = secret.inputs["stringData"]
        assert data["username"] == user
        assert data["password"] == f"{MOCK_SECRET_PREFIX}kafka-{user}-password"
        if user in CONSUMERS:
            assert data["bootstrap-servers"] == "kafka.qframe.svc:9092"
            assert data["sasl-mechanism"] == "SCRAM-SHA-512"
            assert data["security-protocol"] == "SASL_PLAINTEXT"


def test_release_waits_for_the_secrets_and_carries_no_password(dev_run: ProgramRun) -> None:
    release = dev_run.one(RELEASE, "kafka-release")
    assert {s.urn for s in dev_run.of_type(SECRET)} <= set(release.depends_on)
    assert MOCK_SECRET_PREFIX not in json.dumps(release.inputs)
    assert release.secret_inputs == frozenset()
    for resource in dev_run.resources:
        if resource.type not in (SECRET, DYNAMIC_RESOURCE):
            assert MOCK_SECRET_PREFIX not in json.dumps(resource.inputs), resource.name
