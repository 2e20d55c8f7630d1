"""charts/kafka's own server.properties on a real three-node KRaft quorum, authenticated end to end.

The single-broker services test never uses the inter-broker listener, and the controller quorum of
one node never authenticates to a peer. Here helm renders the chart for three replicas; each of
three local JVMs runs that exact configuration (only addresses, the data directory and the
credentials directory are rewritten for 127.0.0.1), formatted with the super users' SCRAM
credentials as start-kafka.sh does. The quorum must form over SASL/PLAIN, a topic with replication
factor 3 must reach three in-sync replicas (replication logs in with SCRAM as "broker"), and the
chart's bootstrap script must create the users, whose produce/consume round trip uses acks=all.
Run twice: as rendered by default, and with tls.existingSecret (SASL_SSL between the brokers too,
each verifying the others' certificate against the CA).
"""

from __future__ import annotations

import functools
import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from infra.offline import REPO_ROOT
from tests.harness import charts
from tests.harness.tls import write_server_tls
from tools.services._net import LOOPBACK, free_port, port_accepts
from tools.services._process import ServiceProcess, child_env, run_once, service_workdir, stopped_on_exit
from tools.services.kafka import KAFKA_HEAP_OPTS, KAFKA_LIB_DIR

pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]

CHART = REPO_ROOT / "charts" / "kafka"
SCRIPT = CHART / "files" / "bootstrap-topics.py"
NODES = 3
CLUSTER_ID = "q1Fr4meKafkaClusterIdA"
START_TIMEOUT_S = 240.0
# Properties that place a broker (addresses, disks, files); everything else is the chart's, verbatim.
PLACEMENT = {"listeners", "controller.quorum.voters", "log.dirs"}


@dataclass(frozen=True)
class Quorum:
    bootstrap_servers: str
    admin_password: str
    mechanism: str
    protocol: str
    ca_file: str | None


def chart_properties(tls: bool) -> dict[str, str]:
    values: dict[str, Any] = {"replicas": NODES}
    if tls:
        values["tls"] = {"existingSecret": "kafka-tls"}
    objects = charts.render_by_name(CHART, values, namespace="qframe", release="kafka")
    text = objects["ConfigMap", "kafka-config"]["data"]["server.properties"]
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value for key, value in pairs}


def node_properties(
    chart: dict[str, str], node: int, *, ports: list[tuple[int, int]], workdir: Path, credentials: Path, tls: Path
) -> str:
    client, controller = ports[node]
    settings = {key: value for key, value in chart.items() if key not in PLACEMENT}
    settings = {
        key: value.replace("/etc/kafka-credentials", str(credentials)).replace("/etc/kafka-tls", str(tls))
        for key, value in settings.items()
    }
    settings.update(
        {
            "node.id": str(node),
            "listeners": f"CLIENT://{LOOPBACK}:{client},CONTROLLER://{LOOPBACK}:{controller}",
            "advertised.listeners": f"CLIENT://{LOOPBACK}:{client}",
            "controller.quorum.voters": ",".join(f"{i}@{LOOPBACK}:{c}" for i, (_, c) in enumerate(ports)),
            "log.dirs": str(workdir / f"data-{node}"),
        }
    )
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@pytest.fixture(scope="module", params=[False, True], ids=["sasl", "sasl-tls"])
def quorum(request: pytest.FixtureRequest) -> Iterator[Quorum]:
    java = shutil.which("java")
    assert java is not None, "the services tier needs a Java 17+ runtime on PATH"
    use_tls: bool = request.param
    chart = chart_properties(use_tls)
    mechanism = chart["sasl.enabled.mechanisms"]
    protocol = "SASL_SSL" if use_tls else "SASL_PLAINTEXT"
    # The test would prove nothing about a chart that did not authenticate every listener.
    assert chart["listener.security.protocol.map"] == f"CLIENT:{protocol},CONTROLLER:SASL_PLAINTEXT"
    passwords = {"broker": secrets.token_hex(16), "admin": secrets.token_hex(16)}
    with ExitStack() as stack:
        workdir = stack.enter_context(service_workdir("kafka-quorum", None))
        credentials = workdir / "credentials"
        credentials.mkdir(mode=0o700)
        for user, password in passwords.items():
            (credentials / f"{user}-password").write_text(password, encoding="utf-8")
        tls = write_server_tls(workdir / "tls")
        ports = [(free_port(), free_port()) for _ in range(NODES)]
        assert len({p for pair in ports for p in pair}) == 2 * NODES
        env = child_env(drop=("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "JAVA_TOOL_OPTIONS", "CLASSPATH"))
        jvm = [java, *KAFKA_HEAP_OPTS, "-Djava.net.preferIPv4Stack=true", "-cp", f"{KAFKA_LIB_DIR}/*"]
        scram = [
            arg for user, pw in passwords.items() for arg in ("--add-scram", f"{mechanism}=[name={user},password={pw}]")
        ]
        processes = []
        for node in range(NODES):
            config = workdir / f"server-{node}.properties"
            config.write_text(
                node_properties(chart, node, ports=ports, workdir=workdir, credentials=credentials, tls=tls),
                encoding="utf-8",
            )
            log = workdir / f"kafka-{node}.log"
            fix = "see the broker log above"
            format_ = [*jvm, "kafka.tools.StorageTool", "format", "--config", str(config), "--cluster-id", CLUSTER_ID]
            run_once("Kafka", [*format_, *scram], log, fix=fix, timeout_s=START_TIMEOUT_S, cwd=workdir, env=env)
            process = ServiceProcess(
                f"Kafka node {node}", [*jvm, "kafka.Kafka", str(config)], log, fix=fix, cwd=workdir, env=env
            )
            processes.append(stack.enter_context(stopped_on_exit(process)))
        for node, process in enumerate(processes):
            client_port = ports[node][0]
            process.wait_ready(
                functools.partial(port_accepts, client_port), timeout_s=START_TIMEOUT_S, what="the client port"
            )
        bootstrap = ",".join(f"{LOOPBACK}:{client}" for client, _ in ports)
        yield Quorum(bootstrap, passwords["admin"], mechanism, protocol, str(tls / "ca.crt") if use_tls else None)


def login(quorum: Quorum, user: str, password: str) -> dict[str, Any]:
    config = {
        "bootstrap.servers": quorum.bootstrap_servers,
        "security.protocol": quorum.protocol,
        "sasl.mechanisms": quorum.mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    return config if quorum.ca_file is None else {**config, "ssl.ca.location": quorum.ca_file}


def wait_for_brokers(admin: AdminClient, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if len(admin.list_topics(timeout=10).brokers) == count:
                return
        except KafkaException as exc:  # not all brokers up yet: retried until the deadline
            print(f"waiting for the brokers: {exc}")
        assert time.monotonic() < deadline, f"fewer than {count} brokers registered within {timeout_s} s"
        time.sleep(2)


def test_three_brokers_form_a_quorum_replicate_and_serve_the_users(quorum: Quorum, tmp_path: Path) -> None:
    admin = AdminClient(login(quorum, "admin", quorum.admin_password))
    wait_for_brokers(admin, NODES)  # every broker registered with the controllers over SASL/PLAIN

    topic = f"replicated-{uuid.uuid4().hex[:6]}"
    users = {"ingestion": secrets.token_hex(16), "research": secrets.token_hex(16)}
    (tmp_path / "users").mkdir()
    for name, password in users.items():
        (tmp_path / "users" / name).write_text(password, encoding="utf-8")
    (tmp_path / "admin").write_text(quorum.admin_password, encoding="utf-8")
    (tmp_path / "topics.json").write_text(
        json.dumps([{"name": topic, "partitions": 3, "replicationFactor": 3, "retentionMs": 3_600_000}]),
        encoding="utf-8",
    )
    auth = {
        "mechanism": quorum.mechanism,
        "users": [
            {"name": "ingestion", "write": [topic], "read": [], "groupPrefix": ""},
            {"name": "research", "write": [], "read": [topic], "groupPrefix": "research"},
        ],
    }
    (tmp_path / "auth.json").write_text(json.dumps(auth), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bootstrap-servers",
            quorum.bootstrap_servers,
            "--topics-json",
            str(tmp_path / "topics.json"),
            "--auth-json",
            str(tmp_path / "auth.json"),
            "--admin-password-file",
            str(tmp_path / "admin"),
            "--user-passwords-dir",
            str(tmp_path / "users"),
            "--wait-seconds",
            "120",
            *([] if quorum.ca_file is None else ["--ca-file", quorum.ca_file]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # Replication: every partition's followers fetched from its leader, logged in as "broker".
    deadline = time.monotonic() + 120
    while True:
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        if all(len(p.isrs) == NODES for p in partitions):
            break
        assert time.monotonic() < deadline, {p.id: p.isrs for p in partitions}
        time.sleep(2)

    marker = uuid.uuid4().hex.encode()
    producer = Producer({**login(quorum, "ingestion", users["ingestion"]), "acks": "all", "enable.idempotence": True})
    delivered: list[Any] = []
    producer.produce(topic, key=b"k", value=marker, on_delivery=lambda err, _msg: delivered.append(err))
    assert producer.flush(60) == 0
    assert delivered == [None]
    consumer = Consumer(
        {**login(quorum, "research", users["research"]), "group.id": "research.quorum", "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        seen = False
        for _ in range(120):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None and message.value() == marker:
                seen = True
                break
    finally:
        consumer.close()
    assert seen
