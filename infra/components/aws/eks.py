"""The EKS cluster, its OIDC provider for IRSA, and the Kubernetes provider built from its outputs.

The API endpoint is always private (reachable from the VPC); the public endpoint is on only for the
CIDRs listed in config, and the config model refuses ``/0``. Control-plane logs go to CloudWatch,
Secrets are envelope-encrypted with the stack's KMS key (the configured key, else one the stack
creates with rotation on). The kubeconfig is a pure function of the cluster's name, endpoint and
CA; it authenticates through ``aws eks get-token`` so no token is ever stored in state. The program
builds the stack's Kubernetes provider from it (infra/providers.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws import managed_policy_arn, service_trust_policy
from infra.components.aws.kms import resolved_key_arn
from infra.components.object_store.s3 import partition
from infra.config import EksSettings

CLUSTER_POLICIES: tuple[str, ...] = ("AmazonEKSClusterPolicy",)
STS_AUDIENCE = "sts.amazonaws.com"
ENCRYPTED_RESOURCES: tuple[str, ...] = ("secrets",)
KMS_DELETION_WINDOW_DAYS = 30


def vpc_config(subnet_ids: Sequence[pulumi.Input[str]], public_cidrs: Sequence[str]) -> dict[str, Any]:
    """Private endpoint always on; the public one only for the listed CIDRs (none: private only)."""
    config: dict[str, Any] = {
        "subnet_ids": list(subnet_ids),
        "endpoint_private_access": True,
        "endpoint_public_access": bool(public_cidrs),
    }
    if public_cidrs:
        config["public_access_cidrs"] = list(public_cidrs)
    return config


def issuer_host_path(issuer: str) -> str:
    """``https://oidc.eks.<region>.amazonaws.com/id/X`` -> the form IAM condition keys use."""
    return issuer.removeprefix("https://")


def kubeconfig(*, cluster: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig for the cluster whose credentials come from ``aws eks get-token`` at each use."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster, "--region", region, "--output", "json"],
            "interactiveMode": "Never",
        }
    }
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "users": [{"name": cluster, "user": user}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
        "current-context": cluster,
    }
    return json.dumps(document, sort_keys=True)


@dataclass
class EksClusterArgs:
    settings: EksSettings
    cluster_name: str
    region: str
    subnet_ids: Sequence[pulumi.Input[str]]
    """The private subnets: the control plane's network interfaces and the nodes live there."""
    kms_key_arn: str | None
    """The configured key; None creates one."""
    production: bool
    """Any environment but dev: the cluster refuses deletion."""
    tags: Mapping[str, str]
    protect: bool = False


class EksCluster(pulumi.ComponentResource):
    """IAM role, KMS key (unless given), the cluster, its OIDC provider, and a kubeconfig for it."""

    name: pulumi.Output[str]
    cluster: aws.eks.Cluster
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    """Host and path of the cluster's OIDC issuer, as IAM trust conditions name it."""
    kms_key_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    """For the stack's Kubernetes provider (infra/providers.py), which the program builds after the nodes."""

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:EksCluster", name, None, opts)
        settings = args.settings
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        part = partition(args.region)

        key_arn: pulumi.Output[str]
        if args.kms_key_arn is None:
            key = aws.kms.Key(
                f"{name}-secrets-key",
                description=f"{args.cluster_name}: envelope encryption of the EKS cluster's Secrets",
                enable_key_rotation=True,
                deletion_window_in_days=KMS_DELETION_WINDOW_DAYS,
                tags=tags,
                # Losing the key loses every Secret in the cluster's etcd.
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            key_arn = key.arn
        else:
            # An alias names a key; the encryption config and any grant need the key's own ARN.
            key_arn = resolved_key_arn(args.kms_key_arn, parent=self)

        role = aws.iam.Role(
            f"{name}-role",
            description=f"{args.cluster_name}: the EKS control plane",
            assume_role_policy=json.dumps(service_trust_policy("eks.amazonaws.com")),
            tags=tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{policy}", role=role.name, policy_arn=managed_policy_arn(part, policy), opts=child
            )
            for policy in CLUSTER_POLICIES
        ]
        cluster = aws.eks.Cluster(
            f"{name}-cluster",
            name=args.cluster_name,
            version=settings.version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                **vpc_config(args.subnet_ids, settings.endpoint_public_access_cidrs)
            ),
            enabled_cluster_log_types=[str(log_type) for log_type in settings.logging],
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key_arn),
                resources=list(ENCRYPTED_RESOURCES),
            ),
            # Access entries (not the aws-auth ConfigMap); whoever runs `pulumi up` becomes admin.
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            deletion_protection=args.production,
            tags=tags,
            # The role must hold its policy before EKS uses it, or creation fails half-way.
            opts=pulumi.ResourceOptions(parent=self, depends_on=attachments, protect=args.protect),
        )
        issuer = cluster.identities.apply(_issuer)
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer,
            client_id_lists=[STS_AUDIENCE],
            tags=tags,
            opts=child,
        )
        self.kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
            lambda values: kubeconfig(
                cluster=str(values[0]), endpoint=str(values[1]), ca_data=_ca_data(values[2]), region=args.region
            )
        )
        self.cluster = cluster
        self.name = cluster.name
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer = issuer.apply(issuer_host_path)
        self.kms_key_arn = key_arn
        # EKS creates it and puts it on the control plane and on every managed node group's nodes.
        self.cluster_security_group_id: pulumi.Output[str] = cluster.vpc_config.apply(
            lambda vpc: str(vpc.cluster_security_group_id or "")
        )
        self.register_outputs(
            {
                "cluster_security_group_id": self.cluster_security_group_id,
                "name": self.name,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_issuer": self.oidc_issuer,
                "kms_key_arn": self.kms_key_arn,
            }
        )


def _issuer(identities: Any) -> str:
    """The OIDC issuer URL among the cluster's identities (typed outputs, or plain dicts)."""
    identity = identities[0]
    oidcs = identity["oidcs"] if isinstance(identity, dict) else identity.oidcs
    first = oidcs[0]
    return str(first["issuer"] if isinstance(first, dict) else first.issuer)


def _ca_data(authority: Any) -> str:
    return str(authority["data"] if isinstance(authority, dict) else authority.data)
