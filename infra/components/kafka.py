"""Apache Kafka in KRaft mode (no ZooKeeper), installed from charts/kafka.

Every broker is also a KRaft controller; the quorum is the static voter set the chart computes
from ``kafka.replicas``. The KRaft cluster id is derived from project, stack and namespace, so
every ``pulumi up`` passes the same id (a new id would make the brokers refuse their own volumes)
and no state has to be kept for it. Topics from the stack config are created by the chart's
post-install/post-upgrade Job.

Every listener authenticates (SASL/SCRAM for clients and brokers, SASL/PLAIN between the KRaft
controllers) and StandardAuthorizer allows only what an ACL allows. The passwords are generated
here, one per consumer plus the brokers' own and the bootstrap admin's, and reach the cluster only as
Secrets ``kafka-<name>`` that the chart mounts as files: ``ingestion`` may write the stack's topics,
``research`` may read them with consumer groups named ``research...``.

With ``protectStateful`` the Release is protected, so ``pulumi destroy`` refuses to uninstall the
brokers; the per-pod PersistentVolumeClaims come from volumeClaimTemplates and are never deleted by
an uninstall anyway.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.credentials import credentials_secret
from infra.config import PROJECT, KafkaSettings, KafkaTopic
from infra.images import ImageRef
from infra.passwords import GeneratedPassword
from infra.quantities import parse_quantity
from infra.scope import Scope

RELEASE_NAME = "kafka"
CHART = "kafka"
CLIENT_PORT = 9092
MS_PER_HOUR = 3_600_000
# Pods carrying this label are admitted to the brokers' client port by the chart's NetworkPolicy.
CLIENT_LABEL = {"qframe.io/kafka-client": "true"}
SASL_MECHANISM = "SCRAM-SHA-512"


# The brokers' own identity and the bootstrap Job's: the chart's two super users.
BROKER_USER, ADMIN_USER = "broker", "admin"
# One SCRAM user per consumer: ingestion produces the market data, research consumes it.
WRITERS, READERS = ("ingestion",), ("research",)
CONSUMERS = WRITERS + READERS
# Readers may use consumer groups whose id starts with their own name ("research", "research.sweep-1").
GROUP_PREFIX_IS_USER_NAME = True


def security_protocol(settings: KafkaSettings) -> str:
    """What clients connect with: SASL_SSL when the stack names a TLS Secret (``kafka.tlsSecret``)."""
    return "SASL_SSL" if settings.tls_secret else "SASL_PLAINTEXT"


def secret_name(user: str) -> str:
    """The Secret holding ``user``'s login (keys username, password, and for consumers how to connect)."""
    return f"{RELEASE_NAME}-{user}"


def build_auth_users(settings: KafkaSettings) -> list[dict[str, Any]]:
    """The chart's ``auth.users``: per consumer the topics it may write and read and its group prefix."""
    names = [topic.name for topic in settings.topics]
    return [
        {
            "name": user,
            "existingSecret": secret_name(user),
            "write": names if user in WRITERS else [],
            "read": names if user in READERS else [],
            "groupPrefix": user if user in READERS and GROUP_PREFIX_IS_USER_NAME else "",
        }
        for user in CONSUMERS
    ]


def kraft_cluster_id(project: str, stack: str, namespace: str) -> str:
    """A stable KRaft cluster id: URL-safe base64 (no padding) of the first 16 bytes of
    sha256("<project>/<stack>/<namespace>/kafka") — 22 characters, what ``kafka-storage format``
    expects."""
    digest = hashlib.sha256(f"{project}/{stack}/{namespace}/kafka".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def default_replication_factor(replicas: int) -> int:
    return min(3, replicas)


def build_topics(settings: KafkaSettings) -> list[dict[str, Any]]:
    """The chart's ``topics`` list: retention in ms (-1 keeps messages forever)."""

    def one(topic: KafkaTopic) -> dict[str, Any]:
        rf = topic.replication_factor or default_replication_factor(settings.replicas)
        retention = -1 if topic.retention_hours == -1 else topic.retention_hours * MS_PER_HOUR
        return {"name": topic.name, "partitions": topic.partitions, "replicationFactor": rf, "retentionMs": retention}

    return [one(topic) for topic in settings.topics]


def _heap_opts(memory_limit: str) -> str:
    """Half the container memory limit for the JVM heap (the rest is page cache and metaspace)."""
    mib = max(256, int(parse_quantity(memory_limit) / 2**20) // 2)
    return f"-Xms{mib}m -Xmx{mib}m"


def build_values(
    *, scope: Scope, settings: KafkaSettings, image: ImageRef, init_image: ImageRef, cluster_id: str
) -> dict[str, Any]:
    """Values for charts/kafka (pure)."""
    return {
        "commonLabels": scope.chart_labels(),
        "replicas": settings.replicas,
        "clusterId": cluster_id,
        "image": image.chart_values(),
        "resources": settings.resources.model_dump(),
        "heapOpts": _heap_opts(settings.resources.limits.memory),
        "persistence": {"size": settings.storage, "storageClassName": ""},
        "topics": build_topics(settings),
        "auth": {
            "mechanism": SASL_MECHANISM,
            "brokerSecret": secret_name(BROKER_USER),
            "adminSecret": secret_name(ADMIN_USER),
            "users": build_auth_users(settings),
        },
        "tls": {"existingSecret": settings.tls_secret or ""},
        "podAntiAffinity": settings.pod_anti_affinity,
        "initJob": {
            "enabled": True,
            "image": init_image.chart_values(),
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "backoffLimit": 6,
            "waitSeconds": 300,
            "ttlSecondsAfterFinished": 600,
        },
        "networkPolicy": {
            "enabled": True,
            "defaultDeny": False,  # charts/tenant-baseline already denies by default in the namespace
            "allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}],
            "dns": {"namespace": "kube-system", "podLabels": {"k8s-app": "kube-dns"}},
        },
    }


@dataclass
class KafkaArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: the release waits for the namespace to exist."""
    scope: Scope
    settings: KafkaSettings
    image: ImageRef
    init_image: ImageRef
    """Runs the topic bootstrap Job (python3 with confluent_kafka)."""


class Kafka(pulumi.ComponentResource):
    """The Kafka release; consumers use ``bootstrap_servers``, log in with their Secret in
    ``credentials_secrets`` and label their pods ``CLIENT_LABEL``."""

    bootstrap_servers: pulumi.Output[str]
    service_name: pulumi.Output[str]
    topics: pulumi.Output[list[str]]
    release_name: pulumi.Output[str]
    credentials_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:data:Kafka", name, None, opts)
        namespace = pulumi.Output.from_input(args.namespace)
        stack = pulumi.get_stack()
        values = namespace.apply(
            lambda ns: build_values(
                scope=args.scope,
                settings=args.settings,
                image=args.image,
                init_image=args.init_image,
                cluster_id=kraft_cluster_id(PROJECT, stack, ns),
            )
        )
        bootstrap = namespace.apply(lambda ns: f"{RELEASE_NAME}.{ns}.svc:{CLIENT_PORT}")
        # The brokers' volumes hold the SCRAM credentials: the passwords must never churn under them.
        child = pulumi.ResourceOptions(parent=self, protect=args.scope.protect)
        labels = args.scope.object_labels("kafka", component="credentials")
        secrets: list[pulumi.Resource] = []
        names: dict[str, str] = {}
        for user in (BROKER_USER, ADMIN_USER, *CONSUMERS):
            password = GeneratedPassword(f"{name}-{user}-password", opts=child)
            data = pulumi.Output.all(bootstrap, password.value).apply(
                _login_data(user, security_protocol(args.settings))
            )
            secrets.append(
                credentials_secret(
                    f"{name}-{user}",
                    name=secret_name(user),
                    namespace=namespace,
                    labels={**labels, "qframe.io/kafka-user": user},
                    data=data,
                    opts=child,
                )
            )
            if user in CONSUMERS:
                names[user] = secret_name(user)
        release = local_chart_release(
            f"{name}-release",
            chart=CHART,
            release=RELEASE_NAME,
            namespace=namespace,
            values=values,
            description="Kafka (KRaft)",
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets, protect=args.scope.protect),
        )
        # Release "kafka" contains the chart name, so the chart's fullname (the client Service) is "kafka".
        self.release_name = release.name.apply(lambda n: n or RELEASE_NAME)
        self.service_name = pulumi.Output.from_input(RELEASE_NAME)
        self.bootstrap_servers = bootstrap
        self.topics = pulumi.Output.from_input([topic.name for topic in args.settings.topics])
        self.credentials_secrets = pulumi.Output.from_input(names)
        self.register_outputs(
            {
                "bootstrap_servers": self.bootstrap_servers,
                "service_name": self.service_name,
                "topics": self.topics,
                "release_name": self.release_name,
                "credentials_secrets": self.credentials_secrets,
            }
        )


def _login_data(user: str, protocol: str) -> Callable[[list[Any]], dict[str, str]]:
    """The keys of one user's Secret from ``[bootstrap servers, password]`` (for Output.all(...).apply).
    Consumers' Secrets also say how to connect, so a pod can take them as QFRAME_KAFKA_* variables."""

    def build(values: list[Any]) -> dict[str, str]:
        data = {"username": user, "password": str(values[1])}
        if user in CONSUMERS:
            data.update(
                {
                    "bootstrap-servers": str(values[0]),
                    "sasl-mechanism": SASL_MECHANISM,
                    "security-protocol": protocol,
                }
            )
        return data

    return build
