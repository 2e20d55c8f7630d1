"""charts/kafka/files/bootstrap-topics.py against a real Kafka (KRaft) broker, run as the Job runs it.

The script is run as a subprocess with the dev stack's topics (the same JSON the chart renders into
its ConfigMap, built by infra.components.kafka.build_topics), twice: the second run with a changed
retention must change exactly that and nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from confluent_kafka.cimpl import NewTopic  # the class confluent_kafka.admin re-exports

from infra.components.kafka import build_topics
from infra.config import parse_raw_config
from infra.offline import REPO_ROOT, load_stack_file
from tools import services

pytestmark = pytest.mark.services

SCRIPT = REPO_ROOT / "charts" / "kafka" / "files" / "bootstrap-topics.py"


def run_script(
    kafka: services.KafkaService, topics: list[dict[str, Any]], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    topics_file = tmp_path / f"topics-{uuid.uuid4().hex[:6]}.json"
    topics_file.write_text(json.dumps(topics), encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap-servers",
            kafka.bootstrap_servers,
            "--topics-json",
            str(topics_file),
            "--wait-seconds",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def describe(kafka: services.KafkaService, names: list[str]) -> dict[str, dict[str, Any]]:
    """name -> {partitions, replicationFactor, retentionMs, topicId-free config snapshot}."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    metadata = admin.list_topics(timeout=10)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    configs = {r.name: f.result(timeout=30) for r, f in admin.describe_configs(resources).items()}
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        partitions = metadata.topics[name].partitions
        found[name] = {
            "partitions": len(partitions),
            "replicationFactor": min(len(p.replicas) for p in partitions.values()),
            "retentionMs": int(configs[name]["retention.ms"].value),
            "overrides": {k: v.value for k, v in configs[name].items() if not v.is_default},
        }
    return found


def dev_topics() -> list[dict[str, Any]]:
    cfg = parse_raw_config(load_stack_file(REPO_ROOT / "Pulumi.dev.yaml"), stack="dev")
    return build_topics(cfg.kafka)


def test_bootstrap_creates_dev_topics_and_is_idempotent(kafka: services.KafkaService, tmp_path: Path) -> None:
    topics = dev_topics()
    names = [t["name"] for t in topics]
    assert names == ["market-data.1m", "market-data.1h", "market-data.1d"]

    first = run_script(kafka, topics, tmp_path)
    assert first.returncode == 0, first.stderr
    assert all(f"{name}: created" in first.stdout for name in names), first.stdout
    state = describe(kafka, names)
    for topic in topics:
        assert state[topic["name"]]["partitions"] == topic["partitions"]
        assert state[topic["name"]]["replicationFactor"] == topic["replicationFactor"]
        assert state[topic["name"]]["retentionMs"] == topic["retentionMs"]
    assert state["market-data.1d"]["retentionMs"] == -1

    # Second run: the same topics, one retention changed (72 h -> 96 h).
    changed = [dict(t) for t in topics]
    changed[0]["retentionMs"] = 96 * 3_600_000
    second = run_script(kafka, changed, tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"market-data.1m: retention.ms {topics[0]['retentionMs']} -> {96 * 3_600_000}" in second.stdout
    assert "market-data.1h: unchanged" in second.stdout
    assert "market-data.1d: unchanged" in second.stdout
    assert "created" not in second.stdout
    after = describe(kafka, names)
    expected = {name: dict(values) for name, values in state.items()}
    expected["market-data.1m"]["retentionMs"] = 96 * 3_600_000
    expected["market-data.1m"]["overrides"] = {
        **expected["market-data.1m"]["overrides"],
        "retention.ms": str(96 * 3_600_000),
    }
    assert after == expected

    # Third run with the same input: nothing to do at all.
    third = run_script(kafka, changed, tmp_path)
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines() == [f"{name}: unchanged" for name in names]
    assert describe(kafka, names) == after


def test_bootstrap_grows_partitions(kafka: services.KafkaService, tmp_path: Path) -> None:
    name = f"grow-{uuid.uuid4().hex[:8]}"
    topic = {"name": name, "partitions": 1, "replicationFactor": 1, "retentionMs": 3_600_000}
    assert run_script(kafka, [topic], tmp_path).returncode == 0
    grown = run_script(kafka, [{**topic, "partitions": 4}], tmp_path)
    assert grown.returncode == 0, grown.stderr
    assert f"{name}: partitions grown to 4" in grown.stdout
    assert describe(kafka, [name])[name]["partitions"] == 4


def test_fewer_partitions_than_existing_is_reported_and_nothing_changes(
    kafka: services.KafkaService, tmp_path: Path
) -> None:
    name = f"shrink-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    other = f"other-{uuid.uuid4().hex[:8]}"

    proc = run_script(
        kafka,
        [
            {"name": name, "partitions": 1, "replicationFactor": 1, "retentionMs": 3_600_000},
            {"name": other, "partitions": 2, "replicationFactor": 1, "retentionMs": 3_600_000},
        ],
        tmp_path,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"{name}: asks for 1 partitions but has 3; Kafka cannot remove partitions" in proc.stderr
    # The impossible request is reported; the rest of the run still happens.
    assert f"{other}: created" in proc.stdout
    state = describe(kafka, [name, other])
    assert state[name]["partitions"] == 3
    assert state[other]["partitions"] == 2


def test_unreachable_broker_fails_with_a_clear_message(tmp_path: Path) -> None:
    topics_file = tmp_path / "topics.json"
    topics_file.write_text("[]", encoding="utf-8")
    port = services.free_port()
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap-servers",
            f"127.0.0.1:{port}",
            "--topics-json",
            str(topics_file),
            "--wait-seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Kafka did not answer within 3 s" in proc.stderr
