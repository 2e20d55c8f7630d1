"""IRSA: one IAM role per workload service account, with exactly that workload's S3 access.

Each role trusts the cluster's OIDC provider for exactly one ``system:serviceaccount:<ns>:<name>``
and the STS audience, and carries one inline policy: list and locate its bucket (listing limited to
its prefix, if it has one), read/write/delete objects under that prefix, and use the bucket's KMS
key. No access keys exist anywhere: pods get short-lived credentials from their token.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.aws import (
    DASK_WORKERS_SERVICE_ACCOUNT,
    IAM_VERSION,
    NOTEBOOKS_SERVICE_ACCOUNT,
    RAY_WORKERS_SERVICE_ACCOUNT,
    ROLE_ARN_ANNOTATION,
)
from infra.components.aws.eks import STS_AUDIENCE
from infra.components.aws.kms import resolved_key_arn
from infra.components.object_store.s3 import OBJECT_ACTIONS, bucket_arn
from infra.config import Buckets
from infra.scope import Scope

# SSE-KMS: GenerateDataKey to write an object, Decrypt to read one.
KMS_ACTIONS: tuple[str, ...] = ("kms:Decrypt", "kms:GenerateDataKey")
# The workloads whose pods run as their IRSA service account today; this component creates those
# accounts. The others' roles wait for their charts to name an account (the trust is already exact).
# ``notebooks`` only where users' servers run as it (no Dask): with Dask they run as Dask's
# ``dask-users``, which the Dask component creates and annotates with the notebooks role.
POD_SERVICE_ACCOUNTS: frozenset[str] = frozenset(
    {DASK_WORKERS_SERVICE_ACCOUNT, RAY_WORKERS_SERVICE_ACCOUNT, NOTEBOOKS_SERVICE_ACCOUNT}
)
# Where ingestion writes in the data lake (the platform's lake layout, qframe.research DATASETS_DIR).
DATASETS_PREFIX = "datasets/"


@dataclass(frozen=True)
class WorkloadAccess:
    workload: str
    service_account: str
    bucket: str
    prefix: str
    """Object key prefix the role may touch, ending in '/'; empty for the whole bucket."""


def workload_accesses(
    buckets: Buckets,
    *,
    mlflow: bool,
    notebooks: bool,
    dask: bool,
    ray: bool,
    notebooks_service_account: str = NOTEBOOKS_SERVICE_ACCOUNT,
) -> list[WorkloadAccess]:
    """The workloads the stack deploys that reach S3, each with its service account and scope (pure).

    ``notebooks_service_account`` is the one account users' servers run as
    (``infra.components.jupyterhub.user_server_account``).
    """
    lake = buckets.data_lake
    found = [WorkloadAccess("ingestion", "ingestion", lake, DATASETS_PREFIX)]
    if mlflow:
        # MLflow serves artifacts to its clients (--serve-artifacts), so only the server reaches the bucket.
        found.append(WorkloadAccess("mlflow", "mlflow", buckets.mlflow_artifacts, ""))
    if notebooks:
        found.append(WorkloadAccess("notebooks", notebooks_service_account, lake, ""))
    if dask:
        found.append(WorkloadAccess("dask-workers", DASK_WORKERS_SERVICE_ACCOUNT, lake, ""))
    if ray:
        found.append(WorkloadAccess("ray-workers", RAY_WORKERS_SERVICE_ACCOUNT, lake, ""))
    return found


def trust_policy(*, provider_arn: str, issuer: str, namespace: str, service_account: str) -> dict[str, Any]:
    """Web identity for exactly one service account of one namespace, and only for STS."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{issuer}:aud": STS_AUDIENCE,
                    }
                },
            }
        ],
    }


def permission_policy(access: WorkloadAccess, *, region: str, kms_key_arn: str | None) -> dict[str, Any]:
    """Exact S3 actions on exactly the workload's bucket and prefix, plus its bucket's KMS key."""
    bucket = bucket_arn(access.bucket, region)
    listing: dict[str, Any] = {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket}
    if access.prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [access.prefix, f"{access.prefix}*"]}}
    statements: list[dict[str, Any]] = [
        listing,
        {"Sid": "Locate", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket},
        {
            "Sid": "Objects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": f"{bucket}/{access.prefix}*",
        },
    ]
    if kms_key_arn is not None:
        statements.append({"Sid": "BucketKey", "Effect": "Allow", "Action": list(KMS_ACTIONS), "Resource": kms_key_arn})
    return {"Version": IAM_VERSION, "Statement": statements}


@dataclass
class IrsaArgs:
    accesses: list[WorkloadAccess]
    namespace: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    """Host and path of the cluster's issuer (``EksCluster.oidc_issuer``)."""
    region: str
    bucket_kms_key_arn: str | None
    """``objectStore.s3.kmsKeyArn``: the key (or an alias of it) the buckets are encrypted with, if any."""
    tags: Mapping[str, str]
    scope: Scope
    namespace_ref: pulumi.Input[str]
    """The Tenancy's namespace output: the service accounts wait for the namespace."""


class Irsa(pulumi.ComponentResource):
    """One role and inline policy per workload service account; ``role_arns`` maps workload -> role ARN."""

    role_arns: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: IrsaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:Irsa", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # IAM's kms actions match the key's ARN, never an alias: resolve one given in config.
        key_arn = None if args.bucket_kms_key_arn is None else resolved_key_arn(args.bucket_kms_key_arn, parent=self)
        arns: dict[str, pulumi.Output[str]] = {}
        for access in args.accesses:
            trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(
                _trust_json(args.namespace, access.service_account)
            )
            role = aws.iam.Role(
                f"{name}-{access.workload}",
                description=f"IRSA: {args.namespace}/{access.service_account}",
                assume_role_policy=trust,
                tags={**args.tags, "qframe.io/service-account": f"{args.namespace}.{access.service_account}"},
                opts=child,
            )
            aws.iam.RolePolicy(
                f"{name}-{access.workload}-s3",
                role=role.id,
                policy=pulumi.Output.from_input(key_arn).apply(
                    functools.partial(_permission_json, access, args.region)
                ),
                opts=child,
            )
            arns[access.workload] = role.arn
            if access.service_account in POD_SERVICE_ACCOUNTS:
                # The EKS pod identity webhook gives pods of this account the role's web identity
                # token (a projected volume of its own: the API token stays unmounted).
                k8s.core.v1.ServiceAccount(
                    f"{name}-{access.workload}-account",
                    metadata={
                        "name": access.service_account,
                        "namespace": args.namespace_ref,
                        "labels": args.scope.object_labels(access.workload, component="identity"),
                        "annotations": {ROLE_ARN_ANNOTATION: role.arn},
                    },
                    automount_service_account_token=False,
                    opts=child,
                )
        self.role_arns = pulumi.Output.all(**arns) if arns else pulumi.Output.from_input({})
        self.register_outputs({"role_arns": self.role_arns})


def _permission_json(access: WorkloadAccess, region: str, kms_key_arn: str | None) -> str:
    return json.dumps(permission_policy(access, region=region, kms_key_arn=kms_key_arn))


def _trust_json(namespace: str, service_account: str) -> Callable[[list[Any]], str]:
    """The trust policy's JSON from ``[provider_arn, issuer]`` (for Output.all(...).apply)."""

    def build(values: list[Any]) -> str:
        document = trust_policy(
            provider_arn=str(values[0]), issuer=str(values[1]), namespace=namespace, service_account=service_account
        )
        return json.dumps(document)

    return build
