"""The ``rds`` PostgreSQL: an RDS instance (pulumi-aws) with the same outputs as the in-cluster one.

The instance is encrypted at rest, never publicly accessible, lives in the subnets and security
groups named in config, and keeps a final snapshot on delete. Outside ``environment: dev``
deletion protection is on and automated backups are kept for at least
``MIN_BACKUP_RETENTION_DAYS`` days, whatever the config says. The master password is a
``GeneratedPassword``: a Pulumi secret that never appears in plain config or state. The AWS
provider comes from the program through ``providers=`` (infra/providers.py).

TODO(rds-roles): for now every consumer Secret carries the master login and the instance's
initial database (``DATABASE``). The in-cluster variant gives each consumer its own role and
database; for RDS the same init script should run as a Kubernetes Job against the RDS endpoint,
after which these Secrets switch to per-consumer generated passwords without changing names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.credentials import credentials_secret
from infra.components.postgres import (
    CONSUMERS,
    PORT,
    SUPERUSER_SECRET,
    SUPERUSER_SECRET_KEY,
    connection_uri,
    consumer_secret_name,
)
from infra.config import PROJECT, RdsSettings
from infra.passwords import GeneratedPassword
from infra.scope import Scope

MASTER_USERNAME = "qframe_admin"
DATABASE = "qframe"
MIN_BACKUP_RETENTION_DAYS = 7
ENGINE = "postgres"


def backup_retention_days(settings: RdsSettings, *, production: bool) -> int:
    configured = settings.backup_retention_days
    return max(configured, MIN_BACKUP_RETENTION_DAYS) if production else configured


def final_snapshot_identifier(name: str) -> str:
    """A valid RDS snapshot identifier: letters, digits, single hyphens, starting with a letter."""
    raw = f"{PROJECT}-{pulumi.get_stack()}-{name}-final"
    cleaned = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]+", "-", raw)).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"s-{cleaned}"
    return cleaned[:255].rstrip("-")


@dataclass
class RdsPostgresArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: the consumers' Secrets wait for the namespace to exist."""
    scope: Scope
    settings: RdsSettings
    production: bool
    """Any environment but dev: deletion protection on, backups kept at least the minimum."""
    tags: Mapping[str, str]


class RdsPostgres(pulumi.ComponentResource):
    """An RDS PostgreSQL instance plus the consumers' connection Secrets in the namespace."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    superuser_secret: pulumi.Output[str]
    connection_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: RdsPostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:Postgres", name, None, opts)
        rds = args.settings
        scope = args.scope
        tags = dict(args.tags)
        namespace = pulumi.Output.from_input(args.namespace)
        child = pulumi.ResourceOptions(parent=self)
        # The instance holds the data; its password must never churn under it.
        stateful = pulumi.ResourceOptions(parent=self, protect=scope.protect)

        master_password = GeneratedPassword(f"{name}-master-password", opts=stateful)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            description=f"{PROJECT} {pulumi.get_stack()}: PostgreSQL subnets",
            subnet_ids=list(rds.subnet_ids),
            tags=tags,
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-instance",
            engine=ENGINE,
            engine_version=rds.engine_version,
            instance_class=rds.instance_class,
            allocated_storage=rds.allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            publicly_accessible=False,
            vpc_security_group_ids=list(rds.security_group_ids),
            db_subnet_group_name=subnet_group.name,
            multi_az=rds.multi_az,
            port=PORT,
            db_name=DATABASE,
            username=MASTER_USERNAME,
            password=master_password.value,
            backup_retention_period=backup_retention_days(rds, production=args.production),
            deletion_protection=args.production,
            skip_final_snapshot=False,
            final_snapshot_identifier=final_snapshot_identifier(name),
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            tags=tags,
            opts=pulumi.ResourceOptions.merge(stateful, pulumi.ResourceOptions(additional_secret_outputs=["password"])),
        )
        # `address` is the DNS name alone (`endpoint` appends the port).
        host: pulumi.Output[str] = instance.address

        labels = scope.object_labels("postgres", component="credentials")
        superuser = credentials_secret(
            f"{name}-superuser",
            name=SUPERUSER_SECRET,
            namespace=namespace,
            labels=labels,
            data=master_password.value.apply(lambda pw: {SUPERUSER_SECRET_KEY: pw, "username": MASTER_USERNAME}),
            opts=child,
        )
        names: dict[str, str] = {}
        for consumer in CONSUMERS:
            secret_name = consumer_secret_name(consumer)
            # TODO(rds-roles): per-consumer roles and databases (see the module docstring).
            data = pulumi.Output.all(host, master_password.value).apply(_connection_data())
            credentials_secret(
                f"{name}-{consumer}",
                name=secret_name,
                namespace=namespace,
                labels={**labels, "qframe.io/postgres-consumer": consumer},
                data=data,
                opts=child,
            )
            names[consumer] = secret_name

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
            }
        )


def _connection_data() -> Callable[[list[Any]], dict[str, str]]:
    """The keys of a consumer's Secret, from ``[host, password]`` (for Output.all(...).apply)."""

    def build(values: list[Any]) -> dict[str, str]:
        host, password = str(values[0]), str(values[1])
        return {
            "username": MASTER_USERNAME,
            "password": password,
            "database": DATABASE,
            "host": host,
            "port": str(PORT),
            "uri": connection_uri(
                user=MASTER_USERNAME, password=password, host=host, port=PORT, database=DATABASE, tls=True
            ),
        }

    return build
