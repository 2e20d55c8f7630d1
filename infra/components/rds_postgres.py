"""The AWS RDS variant of the platform's PostgreSQL, with the same outputs as the in-cluster one.

Chosen by ``postgres.kind: rds``. The instance is encrypted at rest, never publicly accessible,
lives in the subnets and security groups named in config, and keeps a final snapshot on delete.
Outside ``environment: dev`` deletion protection is on and automated backups are kept for at
least ``MIN_BACKUP_RETENTION_DAYS`` days, whatever the config says. The master password is a
``GeneratedPassword``: a Pulumi secret that never appears in plain config or state.

Consumers (MLflow, the data catalog, JupyterHub) receive connection details only through the same
Kubernetes Secrets as with the in-cluster variant (``postgres-<consumer>`` with username,
password, database, host, port and uri), so they never branch on the kind.

TODO(rds-roles): for now every consumer Secret carries the master login and the instance's
initial database (``DATABASE``). The in-cluster variant gives each consumer its own role and
database; for RDS the same init script should run as a Kubernetes Job against the RDS endpoint,
after which these Secrets switch to per-consumer generated passwords without changing names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    consumer_secret_name,
)
from infra.config import PROJECT, StackConfig
from infra.labels import standard_labels
from infra.passwords import GeneratedPassword

MASTER_USERNAME = "qframe_admin"
DATABASE = "qframe"
MIN_BACKUP_RETENTION_DAYS = 7
ENGINE = "postgres"


def is_dev(cfg: StackConfig) -> bool:
    return cfg.environment == "dev"


def backup_retention_days(cfg: StackConfig) -> int:
    configured = cfg.postgres.rds.backup_retention_days
    return configured if is_dev(cfg) else max(configured, MIN_BACKUP_RETENTION_DAYS)


def final_snapshot_identifier(name: str) -> str:
    """A valid RDS snapshot identifier: letters, digits, single hyphens, starting with a letter."""
    raw = f"{PROJECT}-{pulumi.get_stack()}-{name}-final"
    cleaned = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]+", "-", raw)).strip("-")
    if not cleaned[:1].isalpha():
        cleaned = f"s-{cleaned}"
    return cleaned[:255].rstrip("-")


def connection_uri(*, user: str, password: str, host: str, port: int, database: str) -> str:
    # Generated passwords are letters and digits only, so no URL quoting is needed. RDS for
    # PostgreSQL 15+ refuses unencrypted connections by default; ask for TLS explicitly.
    return f"postgresql://{user}:{password}@{host}:{port}/{database}?sslmode=require"


def aws_tags(cfg: StackConfig) -> dict[str, str]:
    """The stack's AWS tags plus the platform's standard tags (which win on a clash)."""
    if cfg.aws is None:
        raise ValueError("postgres.kind=rds needs the aws section of the stack config (at least a region)")
    return {**cfg.aws.tags, "project": PROJECT, "stack": pulumi.get_stack(), "environment": cfg.environment}


@dataclass
class RdsPostgresArgs:
    config: StackConfig
    namespace: pulumi.Input[str]


class RdsPostgres(pulumi.ComponentResource):
    """An RDS PostgreSQL instance plus the consumers' connection Secrets in the namespace."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    superuser_secret: pulumi.Output[str]
    connection_secrets: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: RdsPostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg = args.config
        if cfg.postgres.kind != "rds":
            raise ValueError(f"RdsPostgres needs postgres.kind 'rds', not {cfg.postgres.kind!r}")
        if cfg.aws is None:
            raise ValueError("postgres.kind=rds needs the aws section of the stack config (at least a region)")
        tags = aws_tags(cfg)  # before registering anything
        super().__init__("qframe:aws:Postgres", name, None, opts)
        rds = cfg.postgres.rds
        namespace = pulumi.Output.from_input(args.namespace)

        provider = aws.Provider(
            f"{name}-aws",
            region=cfg.aws.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws_child = pulumi.ResourceOptions(parent=self, provider=provider)
        # The instance holds the data; its password must never churn under it.
        stateful = pulumi.ResourceOptions(parent=self, provider=provider, protect=cfg.protect_stateful)
        k8s_child = pulumi.ResourceOptions(parent=self)

        master_password = GeneratedPassword(
            f"{name}-master-password", opts=pulumi.ResourceOptions(parent=self, protect=cfg.protect_stateful)
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            description=f"{PROJECT} {pulumi.get_stack()}: PostgreSQL subnets",
            subnet_ids=list(rds.subnet_ids),
            tags=tags,
            opts=aws_child,
        )
        production = not is_dev(cfg)
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
            backup_retention_period=backup_retention_days(cfg),
            deletion_protection=production,
            skip_final_snapshot=False,
            final_snapshot_identifier=final_snapshot_identifier(name),
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            tags=tags,
            opts=pulumi.ResourceOptions.merge(stateful, pulumi.ResourceOptions(additional_secret_outputs=["password"])),
        )
        # `address` is the DNS name alone (`endpoint` appends the port).
        host: pulumi.Output[str] = instance.address

        labels = standard_labels(cfg, name="postgres", component="credentials")
        superuser = credentials_secret(
            f"{name}-superuser",
            name=SUPERUSER_SECRET,
            namespace=namespace,
            labels=labels,
            data=master_password.value.apply(lambda pw: {SUPERUSER_SECRET_KEY: pw, "username": MASTER_USERNAME}),
            opts=k8s_child,
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
                opts=k8s_child,
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
            "uri": connection_uri(user=MASTER_USERNAME, password=password, host=host, port=PORT, database=DATABASE),
        }

    return build
