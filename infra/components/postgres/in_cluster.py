"""The ``in-cluster`` PostgreSQL: charts/postgres with a database, role and connection Secret per consumer.

Every password is generated here (``GeneratedPassword``) and reaches the cluster only inside
Kubernetes Secrets; the chart's values name those Secrets and never carry a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.charts import local_chart_release
from infra.components.credentials import credentials_secret
from infra.components.postgres import (
    CLIENT_LABEL,
    CONSUMERS,
    PORT,
    SUPERUSER_SECRET,
    SUPERUSER_SECRET_KEY,
    database_name,
)
from infra.components.postgres.consumers import consumer_login
from infra.config import InClusterPostgresSettings
from infra.images import ImageRef
from infra.passwords import GeneratedPassword
from infra.scope import Scope

RELEASE = "postgres"
SUPERUSER = "postgres"


def service_host(namespace: str) -> str:
    """The ClusterIP Service's DNS name (the chart names it after the release)."""
    return f"{RELEASE}.{namespace}.svc"


def build_values(
    *,
    scope: Scope,
    settings: InClusterPostgresSettings,
    image: ImageRef,
    superuser_secret: str,
    consumer_secrets: Mapping[str, str],
) -> dict[str, Any]:
    """Values for charts/postgres: names of the Secrets holding passwords, never the passwords."""
    return {
        "commonLabels": scope.chart_labels(),
        "image": image.chart_values(),
        "auth": {
            "existingSecret": superuser_secret,
            "secretKey": SUPERUSER_SECRET_KEY,
            "username": SUPERUSER,
            "allowedCIDRs": list(settings.pod_networks),
        },
        "consumers": [
            {"name": database_name(name), "existingSecret": secret} for name, secret in consumer_secrets.items()
        ],
        "persistence": {"size": settings.storage},
        "resources": settings.resources.model_dump(),
        # The server image carries python3 and psycopg for the init script: one image to build and pin.
        "initJob": {"image": image.chart_values()},
        "networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}]},
    }


@dataclass
class InClusterPostgresArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: children wait for the namespace to exist."""
    scope: Scope
    settings: InClusterPostgresSettings
    image: ImageRef


class InClusterPostgres(pulumi.ComponentResource):
    """In-cluster PostgreSQL with a database, role and connection Secret per consumer."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    superuser_secret: pulumi.Output[str]
    connection_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: InClusterPostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token predates the variants' split; changing it would replace deployed stacks.
        super().__init__("qframe:data:Postgres", name, None, opts)
        scope = args.scope
        namespace = pulumi.Output.from_input(args.namespace)
        host = namespace.apply(service_host)
        # The data volume lives as long as the release; the passwords must never churn under it.
        child = pulumi.ResourceOptions(parent=self, protect=scope.protect)

        superuser_password = GeneratedPassword(f"{name}-superuser-password", opts=child)
        labels = scope.object_labels("postgres", component="credentials")
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
            login = consumer_login(
                name,
                consumer,
                host=host,
                namespace=namespace,
                labels=labels,
                tls=False,
                password_opts=child,
                opts=child,
            )
            secrets.append(login.secret)
            names[consumer] = login.secret_name

        release = local_chart_release(
            f"{name}-release",
            chart="postgres",
            release=RELEASE,
            namespace=namespace,
            values=build_values(
                scope=scope,
                settings=args.settings,
                image=args.image,
                superuser_secret=SUPERUSER_SECRET,
                consumer_secrets=names,
            ),
            description="PostgreSQL",
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets, protect=scope.protect),
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
