"""What every Dask and Ray pod of the stack connects to: the lake, the catalog and MLflow.

The same ``QFRAME_*`` names ``qframe.research.settings`` reads, plus the client labels the
services' NetworkPolicies admit. Credentials come only by Secret reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.components.aws import COMPUTE_POOL, COMPUTE_TAINT_KEY, POOL_LABEL
from infra.components.mlflow import CLIENT_ENV as MLFLOW_CLIENT_ENV
from infra.components.mlflow import CLIENT_LABEL as MLFLOW_CLIENT_LABEL
from infra.components.mlflow import tracking_uri as mlflow_tracking_uri
from infra.components.object_store import CLIENT_LABEL as OBJECT_STORE_CLIENT_LABEL
from infra.components.object_store import consumer_secret_name as object_store_secret
from infra.components.postgres import CLIENT_LABEL as POSTGRES_CLIENT_LABEL
from infra.components.postgres import consumer_secret_name as postgres_secret

# The object store's and the database's consumer whose credentials compute pods use.
OBJECT_STORE_CONSUMER = "research"
CATALOG_CONSUMER = "catalog"
WORKDIR = "/tmp/qframe"  # noqa: S108 - an emptyDir in every compute pod


@dataclass(frozen=True)
class ComputePlatform:
    namespace: str
    lake_bucket: str
    object_store_endpoint: str | None
    """The in-cluster S3 endpoint; ``None`` on AWS S3 (IAM role, SDK default endpoint)."""
    mlflow: bool
    postgres_in_cluster: bool
    compute_nodes: bool = False
    """The cluster has the tainted ``compute`` node group (aws.eks): workers tolerate it and prefer it."""
    workload_identity: bool = False
    """EKS with S3: workers run as their IRSA service accounts (infra/components/aws/irsa.py)."""


def env(platform: ComputePlatform) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "QFRAME_LAKE_URL", "value": f"s3://{platform.lake_bucket}/"},
        {"name": "QFRAME_WORKDIR", "value": WORKDIR},
        {
            "name": "QFRAME_CATALOG_URL",
            "valueFrom": {"secretKeyRef": {"name": postgres_secret(CATALOG_CONSUMER), "key": "uri"}},
        },
    ]
    if platform.object_store_endpoint is not None:
        secret = object_store_secret(OBJECT_STORE_CONSUMER)
        out += [
            {"name": "QFRAME_S3_ENDPOINT_URL", "value": platform.object_store_endpoint},
            {"name": "AWS_ENDPOINT_URL_S3", "value": platform.object_store_endpoint},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": secret, "key": "access-key"}}},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": "secret-key"}}},
        ]
    if platform.mlflow:
        out.append({"name": "MLFLOW_TRACKING_URI", "value": mlflow_tracking_uri(platform.namespace)})
        out += [{"name": key, "value": value} for key, value in MLFLOW_CLIENT_ENV.items()]
    return out


def worker_identity(platform: ComputePlatform, service_account: str) -> dict[str, Any]:
    """``serviceAccountName`` of a worker pod when the stack gives workers an IAM role; none otherwise."""
    return {"serviceAccountName": service_account} if platform.workload_identity else {}


def compute_placement(platform: ComputePlatform) -> dict[str, Any]:
    """Pod spec fields that let a worker onto the compute nodes and prefer them; none off EKS.

    Preferred, not required: the group may be scaled to zero, and a worker on a system node beats
    a Pending one.
    """
    if not platform.compute_nodes:
        return {}
    return {
        "tolerations": [{"key": COMPUTE_TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {
                            "matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": [COMPUTE_POOL]}]
                        },
                    }
                ]
            }
        },
    }


def client_labels(platform: ComputePlatform) -> dict[str, str]:
    labels: dict[str, str] = {}
    if platform.object_store_endpoint is not None:
        labels.update(OBJECT_STORE_CLIENT_LABEL)
    if platform.mlflow:
        labels.update(MLFLOW_CLIENT_LABEL)
    if platform.postgres_in_cluster:
        labels.update(POSTGRES_CLIENT_LABEL)
    return labels
