"""Kafka authentication and ACLs on a real broker configured as charts/kafka configures it.

The broker (``kafka_server(sasl=True)``) runs SASL/SCRAM on its client listener, SASL/PLAIN on its
controller listener and StandardAuthorizer with no access unless an ACL allows it. The chart's own
bootstrap script (run as the Job runs it, as the super user ``admin``) creates the dev stack's
topics and the ``ingestion`` and ``research`` users with the ACLs the Pulumi component asks for.
Then the platform's producer and consumer log in from the QFRAME_KAFKA_* settings, and every kind
of client the brokers must refuse is refused: anonymous, wrong password, a user without the ACL.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from qframe.research.data_lake.kafka_stream import KafkaBarIngestor, KafkaIngestError, publish_bars, read_ingested
from qframe.research.data_lake.storage import LocalFileStorage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.settings import ResearchSettings

from infra.components.kafka import build_auth_users, build_topics
from infra.config import parse_raw_config
from infra.offline import REPO_ROOT, load_stack_file
from tools import services

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

SCRIPT = REPO_ROOT / "charts" / "kafka" / "files" / "bootstrap-topics.py"
TOPIC = "market-data.1h"


@pytest.fixture(scope="module")
def broker() -> Iterator[services.KafkaService]:
    with services.kafka_server(sasl=True) as service:
        yield service


def dev_config() -> Any:
    return parse_raw_config(load_stack_file(REPO_ROOT / "Pulumi.dev.yaml"), stack="dev")


def run_bootstrap(
    broker: services.KafkaService, users: list[dict[str, Any]], passwords: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The chart's Job: its script with the rendered topics.json and auth.json and the Secrets as files."""
    run = tmp_path / uuid.uuid4().hex[:8]
    (run / "users").mkdir(parents=True)
    (run / "topics.json").write_text(json.dumps(build_topics(dev_config().kafka)), encoding="utf-8")
    (run / "auth.json").write_text(json.dumps({"mechanism": "SCRAM-SHA-512", "users": users}), encoding="utf-8")
    (run / "admin-password").write_text(broker.admin_password or "", encoding="utf-8")
    for name, password in passwords.items():
        (run / "users" / name).write_text(password, encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--topics-json",
            str(run / "topics.json"),
            "--wait-seconds",
            "60",
            "--auth-json",
            str(run / "auth.json"),
            "--admin-password-file",
            str(run / "admin-password"),
            "--user-passwords-dir",
            str(run / "users"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def users(broker: services.KafkaService, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The dev stack's users, created by the bootstrap script; name -> password."""
    passwords = {"ingestion": secrets.token_hex(16), "research": secrets.token_hex(16)}
    proc = run_bootstrap(broker, build_auth_users(dev_config().kafka), passwords, tmp_path_factory.mktemp("boot"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in passwords:
        assert f"user {name}: SCRAM-SHA-512 credential set" in proc.stdout, proc.stdout
    return passwords


def login(broker: services.KafkaService, user: str, password: str) -> dict[str, str]:
    """What a pod with the Secret kafka-<user> as QFRAME_KAFKA_* variables would use."""
    settings = ResearchSettings.from_env({"QFRAME_KAFKA_USERNAME": user, "QFRAME_KAFKA_PASSWORD": password})
    return {**settings.kafka_client_config(), "bootstrap.servers": broker.bootstrap_servers}


def bars(n: int = 24) -> pd.DataFrame:
    return generate_market_data(["AAA", "BBB"], periods=n, freq="1h", seed=7)


def error_codes_of_metadata_request(config: dict[str, Any]) -> tuple[str, list[int]]:
    """Asks for metadata once; returns the failure and the error codes the client reported."""
    seen: list[int] = []
    settings: dict[str, Any] = {**config, "error_cb": lambda err: seen.append(err.code()), "socket.timeout.ms": 5000}
    admin = AdminClient(settings)
    try:
        admin.list_topics(timeout=6)
    except KafkaException as exc:
        admin.poll(1.0)  # serves error_cb
        return str(exc), seen
    return "answered", seen


def test_an_anonymous_client_is_refused(broker: services.KafkaService, users: dict[str, str]) -> None:
    outcome, _codes = error_codes_of_metadata_request({"bootstrap.servers": broker.bootstrap_servers})
    assert outcome != "answered"
    # The listener speaks only SASL: the broker drops a client that sends a plain request.
    assert "transport" in outcome.lower(), outcome


def test_a_wrong_password_is_refused(broker: services.KafkaService, users: dict[str, str]) -> None:
    outcome, codes = error_codes_of_metadata_request(login(broker, "research", "not-" + users["research"]))
    assert outcome != "answered"
    assert KafkaError._AUTHENTICATION in codes, codes
    right, _ = error_codes_of_metadata_request(login(broker, "research", users["research"]))
    assert right == "answered"


def test_ingestion_publishes_and_research_streams_into_the_lake(
    broker: services.KafkaService, users: dict[str, str], tmp_path: Path
) -> None:
    frame = bars()
    delivered = publish_bars(
        broker.bootstrap_servers, TOPIC, frame, auth=login(broker, "ingestion", users["ingestion"])
    )
    assert delivered == len(frame)
    storage = LocalFileStorage(tmp_path / "lake")
    ingestor = KafkaBarIngestor(
        broker.bootstrap_servers,
        TOPIC,
        storage,
        group_id=f"research.{uuid.uuid4().hex[:8]}",
        auth=login(broker, "research", users["research"]),
        batch_timeout_s=1.0,
    )
    stats = ingestor.run(max_idle_seconds=8)
    assert stats.bars_written == len(frame)
    assert len(read_ingested(storage, ingestor.dataset)) == len(frame)


def test_the_platform_reads_its_login_from_the_environment(
    broker: services.KafkaService, users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QFRAME_KAFKA_USERNAME", "ingestion")
    monkeypatch.setenv("QFRAME_KAFKA_PASSWORD", users["ingestion"])
    assert publish_bars(broker.bootstrap_servers, TOPIC, bars(4)) == len(bars(4))
    monkeypatch.setenv("QFRAME_KAFKA_PASSWORD", "wrong-" + users["ingestion"])
    with pytest.raises(KafkaIngestError, match="refused the login of user 'ingestion'"):
        publish_bars(broker.bootstrap_servers, TOPIC, bars(4), flush_timeout_s=60)


def test_research_may_not_write(broker: services.KafkaService, users: dict[str, str]) -> None:
    with pytest.raises(KafkaIngestError, match=r"refused publishing to .*: .*authorization failed"):
        publish_bars(
            broker.bootstrap_servers,
            TOPIC,
            bars(4),
            auth=login(broker, "research", users["research"]),
            flush_timeout_s=30,
        )


def consume_error(config: dict[str, Any], group: str) -> str:
    """The first error a consumer of TOPIC gets (or "no error" after 20 s)."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([TOPIC])
        for _ in range(40):
            message = consumer.poll(0.5)
            error = None if message is None else message.error()
            if error is not None:
                return str(error.name())
    finally:
        consumer.close()
    return "no error"


def test_ingestion_may_not_read(broker: services.KafkaService, users: dict[str, str]) -> None:
    # Ingestion has no group ACL at all, and no Read on the topic.
    error = consume_error(login(broker, "ingestion", users["ingestion"]), "research.by-ingestion")
    assert error in {"GROUP_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"}, error


def test_research_may_only_use_its_own_consumer_groups(broker: services.KafkaService, users: dict[str, str]) -> None:
    assert consume_error(login(broker, "research", users["research"]), "ingestion-offsets") == (
        "GROUP_AUTHORIZATION_FAILED"
    )


def test_a_topic_taken_off_a_users_list_is_taken_away(
    broker: services.KafkaService, users: dict[str, str], tmp_path: Path
) -> None:
    narrowed = [
        {**user, "read": [t for t in user["read"] if t != TOPIC]} if user["name"] == "research" else user
        for user in build_auth_users(dev_config().kafka)
    ]
    try:
        proc = run_bootstrap(broker, narrowed, users, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "user research: ACLs 0 added, 2 removed" in proc.stdout, proc.stdout
        assert "user ingestion: ACLs unchanged" in proc.stdout, proc.stdout
        error = consume_error(login(broker, "research", users["research"]), f"research.{uuid.uuid4().hex[:6]}")
        assert error == "TOPIC_AUTHORIZATION_FAILED", error
    finally:
        restored = run_bootstrap(broker, build_auth_users(dev_config().kafka), users, tmp_path)
        assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "user research: ACLs 2 added, 0 removed" in restored.stdout, restored.stdout
