"""The ``rds`` PostgreSQL: an RDS instance (pulumi-aws) with the same outputs as the in-cluster one.

The instance is encrypted at rest, never publicly accessible, and keeps a final snapshot on
delete. Outside ``environment: dev`` deletion protection is on and automated backups are kept for
at least ``MIN_BACKUP_RETENTION_DAYS`` days, whatever the config says. Its network is either the
stack's own VPC (``aws.network``: a DB subnet group over the private subnets and a security group
admitting 5432 only from the EKS cluster security group, which the managed node groups' nodes
carry) or the subnets and security groups named in ``postgres.rds``. The AWS provider comes from
the program through ``providers=`` (infra/providers.py).

Each consumer has its own database and login, as in the in-cluster variant: the Job built in
rds_init.py runs the in-cluster chart's init script against the RDS endpoint over TLS
(``sslmode=verify-full`` against ``postgres.rds.caBundle`` when given, else ``require``) and creates
or updates one role (a ``GeneratedPassword``) and one database per consumer. The consumers'
Secrets (``postgres-<consumer>``) carry only their own login; the master login
(``MASTER_USERNAME``, a ``GeneratedPassword`` too) is in ``SUPERUSER_SECRET`` alone, which only
that Job mounts. The Job is replaced, and so re-run, when a password changes; otherwise a
``pulumi up`` leaves it as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.credentials import credentials_secret
from infra.components.postgres import (
    CONSUMERS,
    PORT,
    SUPERUSER_SECRET,
    SUPERUSER_SECRET_KEY,
    rds_init,
)
from infra.components.postgres.consumers import consumer_login
from infra.config import PROJECT, RdsSettings
from infra.images import ImageRef
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


@dataclass(frozen=True)
class StackNetwork:
    """The stack's own VPC (``aws.network``), used instead of ``postgres.rds.subnetIds/securityGroupIds``."""

    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The private subnets (nodes and databases share them)."""
    client_security_group_id: pulumi.Input[str]
    """The EKS cluster security group: the managed node groups' nodes, and so every pod, carry it."""
    subnet_cidrs: Sequence[str]
    """Those subnets' CIDRs: where the init Job's egress may go."""


@dataclass
class RdsPostgresArgs:
    namespace: pulumi.Input[str]
    """The Tenancy's namespace output: the consumers' Secrets wait for the namespace to exist."""
    scope: Scope
    settings: RdsSettings
    production: bool
    """Any environment but dev: deletion protection on, backups kept at least the minimum."""
    tags: Mapping[str, str]
    image: ImageRef
    """The postgres image (python3 + psycopg): the init Job runs the chart's script with it."""
    network: StackNetwork | None = None


class RdsPostgres(pulumi.ComponentResource):
    """An RDS PostgreSQL instance, a database and login per consumer, and their Secrets in the namespace."""

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
        # The instance holds the data; its passwords must never churn under it.
        stateful = pulumi.ResourceOptions(parent=self, protect=scope.protect)

        master_password = GeneratedPassword(f"{name}-master-password", opts=stateful)
        subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]] = list(rds.subnet_ids)
        security_group_ids: list[pulumi.Input[str]] = list(rds.security_group_ids)
        egress_cidrs: Sequence[str] = ()
        if args.network is not None:
            net = args.network
            subnet_ids, egress_cidrs = net.subnet_ids, net.subnet_cidrs
            group = aws.ec2.SecurityGroup(
                f"{name}-sg",
                description=f"{PROJECT} {pulumi.get_stack()}: PostgreSQL from the EKS cluster only",
                vpc_id=net.vpc_id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        protocol="tcp",
                        from_port=PORT,
                        to_port=PORT,
                        security_groups=[net.client_security_group_id],
                        description="PostgreSQL from the EKS cluster security group",
                    )
                ],
                # RDS answers on the connections it accepted; it opens none of its own.
                egress=[],
                tags=tags,
                opts=child,
            )
            security_group_ids = [group.id]
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            description=f"{PROJECT} {pulumi.get_stack()}: PostgreSQL subnets",
            subnet_ids=subnet_ids,
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
            vpc_security_group_ids=security_group_ids,
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
        secrets: list[pulumi.Resource] = [superuser]
        passwords: list[pulumi.Output[str]] = [master_password.value]
        names: dict[str, str] = {}
        for consumer in CONSUMERS:
            login = consumer_login(
                name,
                consumer,
                host=host,
                namespace=namespace,
                labels=labels,
                tls=True,
                password_opts=stateful,
                opts=child,
            )
            secrets.append(login.secret)
            passwords.append(login.password)
            names[consumer] = login.secret_name

        self.init_job = self._init_job(
            name,
            args,
            namespace=namespace,
            host=host,
            passwords=passwords,
            secrets=names,
            needs=[instance, *secrets],
            egress_cidrs=egress_cidrs,
        )
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
                "init_job": self.init_job.metadata.apply(lambda m: str(m["name"])),
            }
        )

    def _init_job(
        self,
        name: str,
        args: RdsPostgresArgs,
        *,
        namespace: pulumi.Output[str],
        host: pulumi.Output[str],
        passwords: list[pulumi.Output[str]],
        secrets: Mapping[str, str],
        needs: list[pulumi.Resource],
        egress_cidrs: Sequence[str],
    ) -> k8s.batch.v1.Job:
        """The init Job, its script's ConfigMap and its egress policy (rds_init.py builds them)."""
        child = pulumi.ResourceOptions(parent=self)
        labels = args.scope.object_labels("postgres", component=rds_init.COMPONENT)
        selector = {
            k: labels[k]
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
        }
        script = k8s.core.v1.ConfigMap(
            f"{name}-init-databases",
            metadata={"name": rds_init.JOB_NAME, "namespace": namespace, "labels": labels},
            data=rds_init.config_map_data(CONSUMERS, args.settings.ca_bundle),
            opts=child,
        )
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-init-databases-egress",
            metadata={"name": f"{rds_init.JOB_NAME}-egress", "namespace": namespace, "labels": labels},
            spec=rds_init.network_policy_spec(selector, egress_cidrs),
            opts=child,
        )
        # A digest of random passwords reveals nothing: it may stay in plain state and diffs.
        digest = pulumi.Output.unsecret(pulumi.Output.all(*passwords).apply(rds_init.passwords_digest))
        spec = pulumi.Output.all(host, digest).apply(
            lambda values: rds_init.job_spec(
                host=str(values[0]),
                user=MASTER_USERNAME,
                dbname=DATABASE,
                image=args.image,
                labels=labels,
                config_map=rds_init.JOB_NAME,
                superuser_secret=SUPERUSER_SECRET,
                consumer_secrets=secrets,
                digest=str(values[1]),
                # With postgres.rds.caBundle the Job verifies the server; else TLS without verification.
                verify_ca=bool(args.settings.ca_bundle),
            )
        )
        return k8s.batch.v1.Job(
            f"{name}-init-databases",
            metadata={"name": rds_init.JOB_NAME, "namespace": namespace, "labels": labels},
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*needs, script, policy],
                # A Job's pod template is immutable: a new digest (a rotated password), script or
                # image means a new Job under the same name, which runs the script again.
                replace_on_changes=["spec"],
                delete_before_replace=True,
            ),
        )
