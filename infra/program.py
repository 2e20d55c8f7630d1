"""Composition of the platform: read the stack config once, create the components, export outputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import config as runtime_config

from infra.components.aws_object_store import AwsObjectStore, AwsObjectStoreArgs
from infra.components.kafka import Kafka, KafkaArgs
from infra.components.object_store import ObjectStore, ObjectStoreArgs
from infra.components.postgres import Postgres, PostgresArgs
from infra.components.rds_postgres import RdsPostgres, RdsPostgresArgs
from infra.components.tenancy import Tenancy, TenancyArgs
from infra.config import StackConfig, StackConfigError, parse_raw_config


def load_stack_config() -> StackConfig:
    """Parses every ``qframe-research:*`` key of the running stack into the closed model.

    Pulumi hands config to the program as a flat map (the ``PULUMI_CONFIG`` environment of the
    language host, or values set by tests); ``pulumi.Config`` can only read keys one by one, which
    would let an unknown key slip through unnoticed.
    """
    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_raw_config(raw, stack=pulumi.get_stack())


def main() -> None:
    try:
        cfg = load_stack_config()
    except StackConfigError as exc:
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
    deploy(cfg)


def deploy(cfg: StackConfig) -> None:
    provider = k8s.Provider("k8s", enable_server_side_apply=True)
    tenancy = Tenancy(
        "tenancy",
        TenancyArgs(config=cfg),
        opts=pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )
    # Services go into the namespace only once its baseline (default-deny, limits) is in place.
    service_opts = pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[tenancy])
    namespace = tenancy.namespace_name
    # Each kind exposes the same outputs, so nothing below branches on in-cluster vs AWS.
    object_store: ObjectStore | AwsObjectStore
    if cfg.object_store.kind == "minio":
        object_store = ObjectStore("object-store", ObjectStoreArgs(config=cfg, namespace=namespace), opts=service_opts)
    else:
        object_store = AwsObjectStore(
            "object-store", AwsObjectStoreArgs(config=cfg, namespace=namespace), opts=service_opts
        )
    postgres: Postgres | RdsPostgres
    if cfg.postgres.kind == "in-cluster":
        postgres = Postgres("postgres", PostgresArgs(config=cfg, namespace=namespace), opts=service_opts)
    else:
        postgres = RdsPostgres("postgres", RdsPostgresArgs(config=cfg, namespace=namespace), opts=service_opts)
    kafka = Kafka("kafka", KafkaArgs(config=cfg, namespace=namespace), opts=service_opts)
    pulumi.export("environment", cfg.environment)
    pulumi.export("namespace", tenancy.namespace_name)
    pulumi.export("object_store_endpoint", object_store.endpoint)
    pulumi.export("object_store_buckets", object_store.buckets)
    pulumi.export("object_store_credentials_secrets", object_store.credentials_secrets)
    pulumi.export("postgres_host", postgres.host)
    pulumi.export("postgres_connection_secrets", postgres.connection_secrets)
    pulumi.export("kafka_bootstrap_servers", kafka.bootstrap_servers)
    pulumi.export("kafka_topics", kafka.topics)
