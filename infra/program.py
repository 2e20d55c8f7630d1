"""Composition of the platform: read the stack config once, create the components, export outputs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from infra.components.aws import cluster_autoscaler as autoscaler
from infra.components.aws import cluster_name
from infra.components.aws.ecr import Ecr, EcrArgs, repository_names
from infra.components.aws.eks import EksCluster, EksClusterArgs
from infra.components.aws.irsa import Irsa, IrsaArgs, workload_accesses
from infra.components.aws.network import Network, NetworkArgs, subnet_plan
from infra.components.aws.node_groups import EksNodeGroups, NodeGroupsArgs
from infra.components.dask import DaskCluster, DaskClusterArgs, scheduler_address
from infra.components.dask import dashboard_url as dask_dashboard
from infra.components.jupyterhub import (
    ComputeAddresses,
    JupyterHub,
    JupyterHubArgs,
    UserPlatform,
    kafka_bootstrap_servers,
    user_server_account,
)
from infra.components.jupyterhub import db_secret_name as jupyterhub_db_secret
from infra.components.kafka import Kafka, KafkaArgs
from infra.components.mlflow import Mlflow, MlflowArgs, artifact_store_for, database_for
from infra.components.object_store import consumer_secret_name as object_store_consumer_secret
from infra.components.object_store.minio import MinioObjectStore, MinioObjectStoreArgs
from infra.components.object_store.minio import endpoint_url as minio_endpoint_url
from infra.components.object_store.s3 import S3ObjectStore, S3ObjectStoreArgs
from infra.components.operators.crds import CrdsMissingError
from infra.components.operators.dask import DaskOperator, DaskOperatorArgs
from infra.components.operators.kuberay import KubeRayOperator, KubeRayOperatorArgs
from infra.components.operators.platform_env import ComputePlatform
from infra.components.postgres.in_cluster import InClusterPostgres, InClusterPostgresArgs
from infra.components.postgres.rds import RdsPostgres, RdsPostgresArgs, StackNetwork
from infra.components.ray import RayCluster, RayClusterArgs
from infra.components.ray import client_address as ray_client_address
from infra.components.ray import dashboard_url as ray_dashboard
from infra.components.tenancy import Tenancy, TenancyArgs
from infra.config import AwsSettings, StackConfig, StackConfigError, parse_raw_config
from infra.images import deployed_images, image_ref
from infra.providers import aws_provider, aws_tags, eks_kubernetes_provider, kubernetes_provider
from infra.scope import Scope


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
    try:
        deploy(cfg)
    except CrdsMissingError as exc:
        raise pulumi.RunError(str(exc)) from None


def deploy(cfg: StackConfig) -> None:
    scope = Scope.of(cfg)
    providers: dict[str, pulumi.ProviderResource] = {}
    # The config model refuses kind s3 or rds without an aws section, so these are set when read.
    region, tags = "", {}
    eks: EksCluster | None = None
    nodes: list[pulumi.Resource] = []
    stack_network: StackNetwork | None = None
    if cfg.aws is not None:
        # One AWS provider for the whole stack: every AWS resource shares its region and default tags.
        region, tags = cfg.aws.region, aws_tags(cfg.aws, environment=cfg.environment, stack=pulumi.get_stack())
        providers["aws"] = aws_provider(region, tags)
        eks, nodes, stack_network = deploy_aws_platform(cfg, cfg.aws, providers, tags)
    # On EKS every Kubernetes object goes to the cluster this program creates, never the ambient one.
    providers["kubernetes"] = (
        eks_kubernetes_provider(eks.kubeconfig, nodes) if eks is not None else kubernetes_provider()
    )
    tenancy = Tenancy("tenancy", TenancyArgs(scope=scope), opts=pulumi.ResourceOptions(providers=providers))
    # Services go into the namespace only once its baseline (default-deny, limits) is in place.
    service_opts = pulumi.ResourceOptions(providers=providers, depends_on=[tenancy])
    namespace = tenancy.namespace_name
    deploy_cluster_autoscaler(cfg, eks, nodes, namespace=namespace, providers=providers, tags=tags)
    images = cfg.images
    # Each kind exposes the same outputs, so nothing below the branch depends on it.
    store = cfg.object_store
    object_store: MinioObjectStore | S3ObjectStore
    if store.kind == "minio":
        object_store = MinioObjectStore(
            "object-store",
            MinioObjectStoreArgs(
                namespace=namespace,
                scope=scope,
                buckets=store.buckets,
                settings=store.minio,
                image=image_ref(images, "minio"),
                init_image=image_ref(images, "tools"),
            ),
            opts=service_opts,
        )
    else:
        object_store = S3ObjectStore(
            "object-store",
            S3ObjectStoreArgs(
                buckets=store.buckets, settings=store.s3, region=region, tags=tags, protect=scope.protect
            ),
            opts=service_opts,
        )
    postgres = deploy_postgres(cfg, namespace, tags, stack_network, service_opts)
    mlflow: Mlflow | None = None
    if cfg.mlflow.enabled:
        mlflow = Mlflow(
            "mlflow",
            MlflowArgs(
                namespace=namespace,
                scope=scope,
                settings=cfg.mlflow,
                image=image_ref(images, "mlflow"),
                database=database_for(in_cluster_postgres=cfg.postgres.kind == "in-cluster"),
                artifacts=artifact_store_for(
                    kind=store.kind, bucket=store.buckets.mlflow_artifacts, namespace=cfg.namespace, region=region
                ),
                depends_on=[postgres, object_store],
            ),
            opts=service_opts,
        )
    kafka = Kafka(
        "kafka",
        KafkaArgs(
            namespace=namespace,
            scope=scope,
            settings=cfg.kafka,
            image=image_ref(images, "kafka"),
            init_image=image_ref(images, "tools"),
        ),
        opts=service_opts,
    )
    services: list[pulumi.Resource] = [tenancy, postgres, object_store, *([mlflow] if mlflow else [])]
    # Before the workers: their pods run as the service accounts this creates.
    irsa: Irsa | None = None
    if eks is not None and store.kind == "s3":
        irsa = deploy_irsa(cfg, eks, namespace=namespace, region=region, tags=tags, providers=providers)
        services.append(irsa)
    compute = deploy_compute(cfg, providers, services, irsa)
    if cfg.jupyterhub.enabled:
        minio = store.kind == "minio"
        jupyterhub = JupyterHub(
            "jupyterhub",
            JupyterHubArgs(
                namespace=namespace,
                scope=scope,
                settings=cfg.jupyterhub,
                image=image_ref(images, "hub"),
                notebook_image=image_ref(images, "notebook"),
                platform=UserPlatform(
                    namespace=cfg.namespace,
                    lake_bucket=store.buckets.data_lake,
                    object_store_endpoint=minio_endpoint_url(cfg.namespace) if minio else None,
                    object_store_secret=object_store_consumer_secret("notebooks") if minio else None,
                    mlflow=mlflow is not None,
                    kafka_bootstrap=kafka_bootstrap_servers(cfg.namespace),
                    compute=compute,
                    workload_identity=eks is not None and store.kind == "s3",
                ),
                db_secret=jupyterhub_db_secret(),
                mlflow_admin_username=cfg.mlflow.auth.admin_username,
            ),
            # MLflow first: the hub reads its admin Secret to create the users' accounts; IRSA
            # (when there) first as well: it creates the account users' servers run as.
            opts=pulumi.ResourceOptions(providers=providers, depends_on=services),
        )
        pulumi.export("jupyterhub_url", jupyterhub.url)
    pulumi.export("environment", cfg.environment)
    pulumi.export("namespace", tenancy.namespace_name)
    export_data_services(object_store, postgres, kafka)
    if mlflow is not None:
        pulumi.export("mlflow_tracking_uri", mlflow.tracking_uri)
        pulumi.export("mlflow_auth_secret", mlflow.auth_secret)


def deploy_postgres(
    cfg: StackConfig,
    namespace: pulumi.Input[str],
    tags: dict[str, str],
    network: StackNetwork | None,
    opts: pulumi.ResourceOptions,
) -> InClusterPostgres | RdsPostgres:
    """The in-cluster chart or RDS (in the stack's VPC when it has one): the same outputs either way."""
    scope = Scope.of(cfg)
    if cfg.postgres.kind == "in-cluster":
        return InClusterPostgres(
            "postgres",
            InClusterPostgresArgs(
                namespace=namespace,
                scope=scope,
                settings=cfg.postgres.in_cluster,
                image=image_ref(cfg.images, "postgres"),
            ),
            opts=opts,
        )
    return RdsPostgres(
        "postgres",
        RdsPostgresArgs(
            namespace=namespace,
            scope=scope,
            settings=cfg.postgres.rds,
            production=cfg.environment != "dev",
            tags=tags,
            image=image_ref(cfg.images, "postgres"),
            network=network,
        ),
        opts=opts,
    )


def deploy_aws_platform(
    cfg: StackConfig, aws_cfg: AwsSettings, providers: dict[str, pulumi.ProviderResource], tags: dict[str, str]
) -> tuple[EksCluster | None, list[pulumi.Resource], StackNetwork | None]:
    """ECR, and on EKS stacks the VPC, the cluster and its node groups.

    Returns the cluster, if any, what its Kubernetes provider must wait for (the node groups), and
    the VPC as RDS uses it (its private subnets, reachable from the cluster security group).
    """
    opts = pulumi.ResourceOptions(providers=providers)
    if aws_cfg.ecr is not None:
        ecr = Ecr(
            "ecr",
            EcrArgs(
                repositories=repository_names(cfg.images.registry, [*deployed_images(cfg), *mirrored_images(aws_cfg)]),
                keep_last=aws_cfg.ecr.keep_last,
                tags=tags,
            ),
            opts=opts,
        )
        pulumi.export("ecr_repository_urls", ecr.repository_urls)
    # The config model requires aws.network with aws.eks (and refuses it without).
    if aws_cfg.eks is None or aws_cfg.network is None:
        return None, [], None
    name = cluster_name(pulumi.get_stack())
    network = Network(
        "network", NetworkArgs(settings=aws_cfg.network, cluster_name=name, region=aws_cfg.region, tags=tags), opts=opts
    )
    eks = EksCluster(
        "eks",
        EksClusterArgs(
            settings=aws_cfg.eks,
            cluster_name=name,
            region=aws_cfg.region,
            subnet_ids=network.private_subnet_ids,
            kms_key_arn=aws_cfg.kms_key_arn,
            production=cfg.environment != "dev",
            tags=tags,
            protect=cfg.protect_stateful,
        ),
        opts=opts,
    )
    node_groups = EksNodeGroups(
        "node-groups",
        NodeGroupsArgs(
            settings=aws_cfg.eks.node_groups,
            cluster_name=eks.name,
            subnet_ids=network.private_subnet_ids,
            region=aws_cfg.region,
            tags=tags,
            autoscaler_cluster=name if aws_cfg.eks.cluster_autoscaler.enabled else None,
        ),
        opts=pulumi.ResourceOptions(providers=providers, depends_on=[eks.cluster]),
    )
    pulumi.export("vpc_id", network.vpc_id)
    pulumi.export("eks_cluster_name", eks.name)
    pulumi.export("eks_oidc_provider_arn", eks.oidc_provider_arn)
    stack_network = StackNetwork(
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        client_security_group_id=eks.cluster_security_group_id,
        subnet_cidrs=[zone.private for zone in subnet_plan(aws_cfg.network.cidr, aws_cfg.network.az_count)],
    )
    return eks, [node_groups], stack_network


def deploy_irsa(
    cfg: StackConfig,
    eks: EksCluster,
    *,
    namespace: pulumi.Input[str],
    region: str,
    tags: dict[str, str],
    providers: dict[str, pulumi.ProviderResource],
) -> Irsa:
    """One IAM role per workload service account that reaches the S3 buckets (S3 stacks on EKS)."""
    store = cfg.object_store
    irsa = Irsa(
        "irsa",
        IrsaArgs(
            accesses=workload_accesses(
                store.buckets,
                mlflow=cfg.mlflow.enabled,
                notebooks=cfg.jupyterhub.enabled,
                dask=cfg.dask.enabled,
                ray=cfg.ray.enabled,
                notebooks_service_account=user_server_account(dask=cfg.dask.enabled, workload_identity=True),
            ),
            namespace=cfg.namespace,
            oidc_provider_arn=eks.oidc_provider_arn,
            oidc_issuer=eks.oidc_issuer,
            region=region,
            bucket_kms_key_arn=store.s3.kms_key_arn,
            tags=tags,
            scope=Scope.of(cfg),
            namespace_ref=namespace,
        ),
        opts=pulumi.ResourceOptions(providers=providers),
    )
    pulumi.export("irsa_role_arns", irsa.role_arns)
    return irsa


def deploy_compute(
    cfg: StackConfig,
    providers: dict[str, pulumi.ProviderResource],
    services: list[pulumi.Resource],
    irsa: Irsa | None = None,
) -> ComputeAddresses:
    """The operators (unless the cluster already has them) and the shared Dask and Ray clusters.

    Returns the addresses users' servers receive; the same values are stack outputs.
    """
    scope = Scope.of(cfg)
    images = cfg.images
    store = cfg.object_store
    platform = ComputePlatform(
        namespace=cfg.namespace,
        lake_bucket=store.buckets.data_lake,
        object_store_endpoint=minio_endpoint_url(cfg.namespace) if store.kind == "minio" else None,
        mlflow=cfg.mlflow.enabled,
        postgres_in_cluster=cfg.postgres.kind == "in-cluster",
        compute_nodes=cfg.aws is not None and cfg.aws.eks is not None,
        workload_identity=cfg.aws is not None and cfg.aws.eks is not None and store.kind == "s3",
    )
    opts = pulumi.ResourceOptions(providers=providers, depends_on=services[:1])
    # Users' servers run as dask-users when Dask is deployed: it carries the notebooks role then.
    users_role_arn = (
        irsa.role_arns.apply(lambda arns: str(arns["notebooks"]))
        if irsa is not None and cfg.jupyterhub.enabled
        else None
    )
    addresses = ComputeAddresses()
    if cfg.dask.enabled:
        needs: list[pulumi.Resource] = list(services)
        if cfg.dask.install_operator:
            needs.append(
                DaskOperator(
                    "dask-operator", DaskOperatorArgs(scope=scope, image=image_ref(images, "dask_operator")), opts=opts
                )
            )
        dask = DaskCluster(
            "dask",
            DaskClusterArgs(
                scope=scope,
                settings=cfg.dask,
                image=image_ref(images, "worker"),
                platform=platform,
                depends_on=needs,
                users_role_arn=users_role_arn,
            ),
            opts=opts,
        )
        pulumi.export("dask_scheduler_address", dask.scheduler_address)
        pulumi.export("dask_dashboard_url", dask.dashboard_url)
        addresses = dataclasses.replace(
            addresses, dask_scheduler=scheduler_address(cfg.namespace), dask_dashboard=dask_dashboard(cfg.namespace)
        )
    if cfg.ray.enabled:
        needs = list(services)
        if cfg.ray.install_operator:
            needs.append(
                KubeRayOperator(
                    "kuberay-operator",
                    KubeRayOperatorArgs(scope=scope, image=image_ref(images, "kuberay_operator")),
                    opts=opts,
                )
            )
        ray = RayCluster(
            "ray",
            RayClusterArgs(
                scope=scope, settings=cfg.ray, image=image_ref(images, "worker"), platform=platform, depends_on=needs
            ),
            opts=opts,
        )
        pulumi.export("ray_client_address", ray.client_address)
        pulumi.export("ray_dashboard_url", ray.dashboard_url)
        pulumi.export("ray_job_submission_address", ray.dashboard_url)
        addresses = dataclasses.replace(
            addresses, ray_client=ray_client_address(cfg.namespace), ray_dashboard=ray_dashboard(cfg.namespace)
        )
    return addresses


def export_data_services(
    object_store: MinioObjectStore | S3ObjectStore, postgres: InClusterPostgres | RdsPostgres, kafka: Kafka
) -> None:
    """The data services' endpoints and the Secrets their consumers read, as stack outputs."""
    pulumi.export("object_store_endpoint", object_store.endpoint)
    pulumi.export("object_store_buckets", object_store.buckets)
    pulumi.export("object_store_credentials_secrets", object_store.credentials_secrets)
    pulumi.export("postgres_host", postgres.host)
    pulumi.export("postgres_connection_secrets", postgres.connection_secrets)
    pulumi.export("kafka_bootstrap_servers", kafka.bootstrap_servers)
    pulumi.export("kafka_topics", kafka.topics)
    pulumi.export("kafka_credentials_secrets", kafka.credentials_secrets)


def mirrored_images(aws_cfg: AwsSettings) -> list[str]:
    """Images the stack runs but does not build (upstream releases mirrored into its registry)."""
    eks = aws_cfg.eks
    return [autoscaler.IMAGE_NAME] if eks is not None and eks.cluster_autoscaler.enabled else []


def deploy_cluster_autoscaler(
    cfg: StackConfig,
    eks: EksCluster | None,
    nodes: list[pulumi.Resource],
    *,
    namespace: pulumi.Input[str],
    providers: dict[str, pulumi.ProviderResource],
    tags: dict[str, str],
) -> autoscaler.ClusterAutoscaler | None:
    """On EKS (unless turned off): the cluster-autoscaler in the stack's namespace, with its own IRSA role."""
    eks_cfg = cfg.aws.eks if cfg.aws is not None else None
    if eks is None or cfg.aws is None or eks_cfg is None or not eks_cfg.cluster_autoscaler.enabled:
        return None
    (node_groups,) = [n for n in nodes if isinstance(n, EksNodeGroups)]
    return autoscaler.ClusterAutoscaler(
        "cluster-autoscaler",
        autoscaler.ClusterAutoscalerArgs(
            cluster_name=cluster_name(pulumi.get_stack()),
            region=cfg.aws.region,
            namespace=cfg.namespace,
            namespace_ref=namespace,
            oidc_provider_arn=eks.oidc_provider_arn,
            oidc_issuer=eks.oidc_issuer,
            autoscaling_group_names=node_groups.autoscaling_group_names,
            node_group_arns=[group.arn for group in node_groups.groups.values()],
            image=autoscaler.image_ref(cfg.images, eks_cfg.cluster_autoscaler_tag),
            scope=Scope.of(cfg),
            tags=tags,
        ),
        # After the node groups (their Auto Scaling groups' names are in its policy).
        opts=pulumi.ResourceOptions(providers=providers, depends_on=[*nodes]),
    )
