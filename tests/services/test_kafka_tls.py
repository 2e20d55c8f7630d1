"""Kafka's optional TLS listener (charts/kafka tls.existingSecret) on a real broker.

The broker runs as the chart configures it with a TLS Secret: SASL_SSL on the client listener with
the PEM certificate, key and CA read from files. The chart's bootstrap script logs in over TLS
(--ca-file) to create a user; the platform's producer, configured from QFRAME_KAFKA_* with
SASL_SSL and the CA, publishes; a client speaking SASL without TLS and a TLS client that does not
trust the CA are both refused.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from qframe.research.data_lake.kafka_stream import publish_bars
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.settings import ResearchSettings

from infra.offline import REPO_ROOT
from tests.harness.tls import write_server_tls
from tools import services

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

SCRIPT = REPO_ROOT / "charts" / "kafka" / "files" / "bootstrap-topics.py"
TOPIC = "market-data.1h"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.KafkaService]:
    tls = write_server_tls(tmp_path_factory.mktemp("kafka-tls"))
    with services.kafka_server(sasl=True, tls_dir=tls) as service:
        yield service


@pytest.fixture(scope="module")
def ingestion_password(tls_broker: services.KafkaService, tmp_path_factory: pytest.TempPathFactory) -> str:
    run = tmp_path_factory.mktemp("boot")
    password = secrets.token_hex(16)
    (run / "users").mkdir()
    (run / "users" / "ingestion").write_text(password, encoding="utf-8")
    (run / "admin").write_text(tls_broker.admin_password or "", encoding="utf-8")
    (run / "topics.json").write_text(
        json.dumps([{"name": TOPIC, "partitions": 1, "replicationFactor": 1, "retentionMs": 3_600_000}]),
        encoding="utf-8",
    )
    users = [{"name": "ingestion", "write": [TOPIC], "read": [], "groupPrefix": ""}]
    (run / "auth.json").write_text(json.dumps({"mechanism": "SCRAM-SHA-512", "users": users}), encoding="utf-8")
    assert tls_broker.ca_file is not None
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap-servers",
            tls_broker.bootstrap_servers,
            "--topics-json",
            str(run / "topics.json"),
            "--auth-json",
            str(run / "auth.json"),
            "--admin-password-file",
            str(run / "admin"),
            "--user-passwords-dir",
            str(run / "users"),
            "--ca-file",
            tls_broker.ca_file,
            "--wait-seconds",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{TOPIC}: created" in proc.stdout
    return password


def answers(config: dict[str, Any]) -> bool:
    try:
        AdminClient({**config, "socket.timeout.ms": 4000}).list_topics(timeout=6)
    except KafkaException:
        return False
    return True


def test_the_platform_publishes_over_sasl_ssl_from_its_settings(
    tls_broker: services.KafkaService, ingestion_password: str
) -> None:
    assert tls_broker.ca_file is not None
    settings = ResearchSettings.from_env(
        {
            "QFRAME_KAFKA_USERNAME": "ingestion",
            "QFRAME_KAFKA_PASSWORD": ingestion_password,
            "QFRAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "QFRAME_KAFKA_SSL_CA_LOCATION": tls_broker.ca_file,
        }
    )
    bars = generate_market_data(["AAA"], periods=12, freq="1h", seed=3)
    assert publish_bars(tls_broker.bootstrap_servers, TOPIC, bars, auth=settings.kafka_client_config()) == 12


def test_sasl_without_tls_and_tls_without_the_ca_are_refused(tls_broker: services.KafkaService) -> None:
    admin = tls_broker.client_config()
    assert admin["security.protocol"] == "SASL_SSL"
    assert answers(admin)
    assert not answers({**admin, "security.protocol": "SASL_PLAINTEXT"})
    untrusted = {key: value for key, value in admin.items() if key != "ssl.ca.location"}
    assert not answers(untrusted)
