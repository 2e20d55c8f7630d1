"""A single-node Apache Kafka broker and controller (KRaft) on 127.0.0.1, run from the jars.

The broker jars come from ``.tools/kafka-lib`` (``tools/install kafka`` fetches them from Maven
Central); a Java 17+ runtime must be on PATH.

``kafka_server(sasl=True)`` configures the broker the way charts/kafka does: SASL/SCRAM on the
client (and inter-broker) listener, SASL/PLAIN on the controller listener, StandardAuthorizer with
no access unless an ACL allows it, super users ``broker`` and ``admin`` whose SCRAM credentials are
written at format time, and passwords read from files through the DirectoryConfigProvider.
``tls_dir`` (a directory holding tls.crt, tls.key and ca.crt, as the chart's tls.existingSecret)
adds TLS to the client listener (SASL_SSL), with the PEM read the same way.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tools.paths import TOOLS_DIR
from tools.services._net import LOOPBACK, free_port, port_accepts
from tools.services._process import ServiceProcess, child_env, run_once, service_workdir, stopped_on_exit
from tools.services.errors import ServiceStartError

KAFKA_LIB_DIR = TOOLS_DIR / "kafka-lib"
# Generous: a loaded 2-core machine needs 20-40 s for a cold JVM broker.
KAFKA_TIMEOUT_S = 120.0

# Small heap, quick start; no hsperfdata files in /tmp.
KAFKA_HEAP_OPTS = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData")
_SLF4J_NOP_MARKER = "no-operation (NOP) logger"
SASL_MECHANISM = "SCRAM-SHA-512"
ADMIN_USER = "admin"
BROKER_USER = "broker"


@dataclass(frozen=True)
class KafkaService:
    host: str
    port: int
    controller_port: int
    bootstrap_servers: str
    cluster_id: str
    pid: int
    started_in_s: float
    sasl_mechanism: str | None = None
    """Set when the broker was started with ``sasl=True``."""
    admin_password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    """The CA to verify a TLS broker (``tls_dir``) with."""

    def client_config(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """librdkafka settings to reach this broker: as ``username`` (default the super user ``admin``
        on a SASL broker), or anonymously on a plaintext one."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        if self.sasl_mechanism is None:
            return config
        user, secret = (ADMIN_USER, self.admin_password) if username is None else (username, password)
        if self.ca_file is not None:
            config["ssl.ca.location"] = self.ca_file
        return {
            **config,
            "security.protocol": "SASL_PLAINTEXT" if self.ca_file is None else "SASL_SSL",
            "sasl.mechanisms": self.sasl_mechanism,
            "sasl.username": user or "",
            "sasl.password": secret or "",
        }


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's own format: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka's tools reject ids that look like an option
            return cluster_id


def _kafka_fix(fix: str) -> Callable[[str], str]:
    def for_log(log_tail: str) -> str:
        if _SLF4J_NOP_MARKER in log_tail:
            return (
                f"{fix}. Note: SLF4J fell back to its NOP logger, so the broker's own messages are "
                "missing from this log; kafka-lib needs an slf4j-api jar matching its slf4j binding"
            )
        return fix

    return for_log


def _sasl_properties(credentials: Path, mechanism: str, tls_dir: Path | None = None) -> dict[str, str]:
    """The security settings charts/kafka renders (templates/configmap.yaml), for a broker on loopback."""
    password = f"${{secrets:{credentials}:broker-password}}"
    tls = {}
    if tls_dir is not None:
        tls = {
            "listener.name.client.ssl.keystore.type": "PEM",
            "listener.name.client.ssl.keystore.certificate.chain": f"${{secrets:{tls_dir}:tls.crt}}",
            "listener.name.client.ssl.keystore.key": f"${{secrets:{tls_dir}:tls.key}}",
            "listener.name.client.ssl.truststore.type": "PEM",
            "listener.name.client.ssl.truststore.certificates": f"${{secrets:{tls_dir}:ca.crt}}",
        }
    client = "SASL_PLAINTEXT" if tls_dir is None else "SASL_SSL"
    return {
        **tls,
        "listener.security.protocol.map": f"CLIENT:{client},CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": mechanism,
        "listener.name.client.sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "config.providers": "secrets",
        "config.providers.secrets.class": "org.apache.kafka.common.config.provider.DirectoryConfigProvider",
        f"listener.name.client.{mechanism.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{password}";'
        ),
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{password}" user_{BROKER_USER}="{password}";'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
    }


def _kafka_properties(
    *, node_id: int, broker_port: int, controller_port: int, log_dir: Path, sasl: dict[str, str] | None = None
) -> str:
    listener = "PLAINTEXT" if sasl is None else "CLIENT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{LOOPBACK}:{controller_port}",
        "listeners": f"{listener}://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"{listener}://{LOOPBACK}:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        # A single node: every internal topic must make do with one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        **(sasl or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


@contextmanager
def kafka_server(
    *,
    kafka_lib: Path | None = None,
    java: str | None = None,
    startup_timeout_s: float = KAFKA_TIMEOUT_S,
    workdir_parent: Path | None = None,
    sasl: bool = False,
    tls_dir: Path | None = None,
) -> Iterator[KafkaService]:
    """A single-node Apache Kafka broker+controller (KRaft) run from the jars in ``.tools/kafka-lib``;
    with ``sasl`` authenticated and authorized as charts/kafka configures it (module docstring)."""
    service = "Kafka"
    kafka_lib = kafka_lib if kafka_lib is not None else KAFKA_LIB_DIR
    fix = f"run tools/install kafka (puts the broker jars in {KAFKA_LIB_DIR})"
    if tls_dir is not None and not sasl:
        raise ValueError("kafka_server(tls_dir=...) needs sasl=True: the chart's TLS listener is SASL_SSL")
    java_bin = java if java is not None else shutil.which("java")
    if java_bin is None:
        raise ServiceStartError(
            service,
            "no 'java' on PATH",
            fix="install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
        )
    if not kafka_lib.is_dir() or not any(kafka_lib.glob("kafka_*.jar")):
        raise ServiceStartError(
            service,
            f"no Kafka broker jars (kafka_<scala>-<version>.jar) in {kafka_lib}",
            fix=fix,
            command=[java_bin, "-cp", f"{kafka_lib}/*", "kafka.Kafka"],
        )

    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only the services tier needs it

    started = time.monotonic()
    with service_workdir(service, workdir_parent) as workdir:
        broker_port, controller_port = free_port(), free_port()
        while controller_port == broker_port:
            controller_port = free_port()
        properties = workdir / "server.properties"
        passwords = {BROKER_USER: secrets.token_hex(16), ADMIN_USER: secrets.token_hex(16)}
        sasl_settings = None
        add_scram: list[str] = []
        if sasl:
            credentials = workdir / "credentials"
            credentials.mkdir(mode=0o700)
            for user, password in passwords.items():
                (credentials / f"{user}-password").write_text(password, encoding="utf-8")
                add_scram += ["--add-scram", f"{SASL_MECHANISM}=[name={user},password={password}]"]
            sasl_settings = _sasl_properties(credentials, SASL_MECHANISM, tls_dir)
        properties.write_text(
            _kafka_properties(
                node_id=1,
                broker_port=broker_port,
                controller_port=controller_port,
                log_dir=workdir / "data",
                sasl=sasl_settings,
            ),
            encoding="utf-8",
        )
        cluster_id = _kafka_cluster_id()
        classpath = f"{kafka_lib}/*"
        jvm = [
            java_bin,
            *KAFKA_HEAP_OPTS,
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",  # plain IPv4 sockets on 127.0.0.1, not v4-mapped IPv6
            f"-Dkafka.logs.dir={workdir / 'logs'}",
        ]
        log_path = workdir / "kafka.log"
        env = child_env(drop=("KAFKA_OPTS", "KAFKA_HEAP_OPTS", "JAVA_TOOL_OPTIONS", "CLASSPATH"))
        fix_for_log = _kafka_fix(fix)
        run_once(
            service,
            [
                *jvm,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(properties),
                *add_scram,
            ],
            log_path,
            fix=fix_for_log,
            timeout_s=startup_timeout_s,
            cwd=workdir,
            env=env,
        )
        process = ServiceProcess(
            service,
            [*jvm, "-cp", classpath, "kafka.Kafka", str(properties)],
            log_path,
            fix=fix_for_log,
            cwd=workdir,
            env=env,
        )
        with stopped_on_exit(process):
            bootstrap = f"{LOOPBACK}:{broker_port}"
            info = KafkaService(
                host=LOOPBACK,
                port=broker_port,
                controller_port=controller_port,
                bootstrap_servers=bootstrap,
                cluster_id=cluster_id,
                pid=process.pid,
                started_in_s=0.0,
                sasl_mechanism=SASL_MECHANISM if sasl else None,
                admin_password=passwords[ADMIN_USER] if sasl else None,
                ca_file=None if tls_dir is None else str(tls_dir / "ca.crt"),
            )
            deadline = time.monotonic() + startup_timeout_s
            process.wait_ready(
                lambda: port_accepts(broker_port), timeout_s=startup_timeout_s, what=f"port {broker_port}"
            )

            def answers() -> bool:
                # A fresh client per probe, so no connection outlives start-up.
                admin = AdminClient({**info.client_config(), "socket.timeout.ms": "5000"})
                metadata = admin.list_topics(timeout=5)
                return 1 in metadata.brokers and bool(metadata.cluster_id == cluster_id)

            process.wait_ready(
                answers,
                timeout_s=max(1.0, deadline - time.monotonic()),
                what="an AdminClient metadata request listing broker 1",
            )
            yield dataclasses.replace(info, started_in_s=round(time.monotonic() - started, 2))
