"""PostgreSQL for the platform's metadata: one database, role and connection Secret per consumer.

The in-cluster variant installs charts/postgres. Every password is generated here
(``GeneratedPassword``) and reaches the cluster only inside Kubernetes Secrets; the chart's values
name those Secrets and never carry a password. Each consumer (MLflow, the data catalog,
JupyterHub) gets a Secret ``postgres-<consumer>`` with its user, password, database, host, port
and a ready-to-use ``uri``, so consumers never assemble connection strings themselves.
The RDS variant (same outputs) is not built yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.credentials import credentials_secret
from infra.config import StackConfig
from infra.labels import standard_labels
from infra.passwords import GeneratedPassword

RELEASE = "postgres"
PORT = 5432
CONSUMERS: tuple[str, ...] = ("mlflow", "catalog", "jupyterhub")
SUPERUSER = "postgres"
SUPERUSER_SECRET = "postgres-superuser"  # noqa: S105 - a Secret's name, not a credential
SUPERUSER_SECRET_KEY = "postgres-password"  # noqa: S105 - a key name, not a credential
# Pods carrying this label are admitted to port 5432 by the chart's NetworkPolicy.
CLIENT_LABEL = {"qframe.io/postgres-client": "true"}


def consumer_secret_name(consumer: str) -> str:
    return f"postgres-{consumer}"


def service_host(namespace: str) -> str:
    """The ClusterIP Service's DNS name (the chart names it after the release)."""
    return f"{RELEASE}.{namespace}.svc"


def connection_uri(*, user: str, password: str, host: str, port: int, database: str) -> str:
    # Generated passwords are letters and digits only (infra/secrets.py), so no URL quoting is needed.
    return f"postgresql://{user}:{password}@{host}:{port}/{database}"


def _require_in_cluster(cfg: StackConfig) -> None:
    if cfg.postgres.kind != "in-cluster":
        raise NotImplementedError(
            f"postgres.kind {cfg.postgres.kind!r} is not implemented yet: only 'in-cluster' "
            "(charts/postgres) is available; the RDS variant comes in a later change"
        )


def build_values(cfg: StackConfig, *, superuser_secret: str, consumer_secrets: dict[str, str]) -> dict[str, Any]:
    """Values for charts/postgres: names of the Secrets holding passwords, never the passwords."""
    _require_in_cluster(cfg)
    settings = cfg.postgres.in_cluster
    tag = cfg.images.tags.postgres
    digest = tag if tag.startswith("sha256:") else ""
    return {
        "commonLabels": {**cfg.labels, "qframe.io/stack-namespace": cfg.namespace},
        "image": {
            "repository": f"{cfg.images.registry}/postgres",
            # The schema needs a tag-shaped value even when the digest pins the image.
            "tag": "digest" if digest else tag,
            "digest": digest,
            "pullPolicy": cfg.images.pull_policy,
        },
        "auth": {"existingSecret": superuser_secret, "secretKey": SUPERUSER_SECRET_KEY, "username": SUPERUSER},
        "consumers": [{"name": name, "existingSecret": secret} for name, secret in consumer_secrets.items()],
        "persistence": {"size": settings.storage},
        "resources": settings.resources.model_dump(),
        "networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}]},
    }


@dataclass
class PostgresArgs:
    config: StackConfig
    namespace: pulumi.Input[str]


class Postgres(pulumi.ComponentResource):
    """In-cluster PostgreSQL with a database, role and connection Secret per consumer."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    superuser_secret: pulumi.Output[str]
    connection_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = args.config
        _require_in_cluster(cfg)  # before registering anything
        super().__init__("qframe:data:Postgres", name, None, opts)
        namespace = pulumi.Output.from_input(args.namespace)
        host = namespace.apply(service_host)
        # The data volume lives as long as the release; the passwords must never churn under it.
        child = pulumi.ResourceOptions(parent=self, protect=cfg.protect_stateful)

        superuser_password = GeneratedPassword(f"{name}-superuser-password", opts=child)
        labels = standard_labels(cfg, name="postgres", component="credentials")
        superuser = credentials_secret(
            f"{name}-superuser",
            name=SUPERUSER_SECRET,
            namespace=namespace,
            labels=labels,
            data=superuser_password.value.apply(lambda pw: {SUPERUSER_SECRET_KEY: pw}),
            opts=child,
        )

        secrets: list[pulumi.Resource] = [superuser]
        names: dict[str, str] = {}
        for consumer in CONSUMERS:
            password = GeneratedPassword(f"{name}-{consumer}-password", opts=child)
            secret_name = consumer_secret_name(consumer)
            data = pulumi.Output.all(host, password.value).apply(_connection_data(consumer))
            secrets.append(
                credentials_secret(
                    f"{name}-{consumer}",
                    name=secret_name,
                    namespace=namespace,
                    labels={**labels, "qframe.io/postgres-consumer": consumer},
                    data=data,
                    opts=child,
                )
            )
            names[consumer] = secret_name

        release = local_chart_release(
            f"{name}-release",
            chart="postgres",
            release=RELEASE,
            namespace=namespace,
            values=build_values(cfg, superuser_secret=SUPERUSER_SECRET, consumer_secrets=names),
            description="PostgreSQL",
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets, protect=cfg.protect_stateful),
        )

        self.release_name = release.name
        self.host = host
        self.port = pulumi.Output.from_input(PORT)
        self.superuser_secret = superuser.metadata.apply(lambda m: str(m["name"]))
        self.connection_secrets = pulumi.Output.from_input(names)
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "superuser_secret": self.superuser_secret,
                "connection_secrets": self.connection_secrets,
                "release_name": self.release_name,
            }
        )


def _connection_data(user: str) -> Callable[[list[Any]], dict[str, str]]:
    """The keys of one consumer's Secret, from ``[host, password]`` (for Output.all(...).apply)."""

    def build(values: list[Any]) -> dict[str, str]:
        host, password = str(values[0]), str(values[1])
        return {
            "username": user,
            "password": password,
            "database": user,
            "host": host,
            "port": str(PORT),
            "uri": connection_uri(user=user, password=password, host=host, port=PORT, database=user),
        }

    return build
