"""The AWS-hosted Kubernetes platform (pulumi-aws only): network, EKS, node groups, IRSA, ECR.

Each module follows the components' pattern: pure builders return plain data (subnet plans, IAM
documents, a kubeconfig), and a thin ComponentResource registers the resources from them, its
children parented to it, the AWS provider inherited through ``providers=`` (infra/providers.py).
"""

from __future__ import annotations

from typing import Any

import pulumi

from infra.config import PROJECT

IAM_VERSION = "2012-10-17"
# Node-group placement, shared by the node groups (label, taint) and the pods that may use them.
POOL_LABEL = "qframe.io/node-pool"
COMPUTE_POOL = "compute"
COMPUTE_TAINT_KEY = "qframe.io/compute"
# The IRSA service accounts the compute workers run as (infra/components/aws/irsa.py creates them).
DASK_WORKERS_SERVICE_ACCOUNT = "dask-workers"
RAY_WORKERS_SERVICE_ACCOUNT = "ray-workers"
# The IRSA account users' servers run as on S3 stacks without Dask (with Dask they run as Dask's
# dask-users, which then carries the notebooks role too: one account per pod, so one for both).
NOTEBOOKS_SERVICE_ACCOUNT = "notebooks"
# The annotation the EKS pod identity webhook reads to give a ServiceAccount's pods an IAM role.
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"


def cluster_name(stack: str) -> str:
    """The EKS cluster's name: subnet tags, node groups and the kubeconfig all need it before it exists."""
    return f"{PROJECT}-{stack}"


def service_trust_policy(service: str) -> dict[str, Any]:
    """Lets exactly one AWS service (``eks.amazonaws.com``, ``ec2.amazonaws.com``) assume a role."""
    return {
        "Version": IAM_VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def invoke_parent(component: pulumi.Resource) -> pulumi.InvokeOptions:
    """Invokes run with the component's provider (its region), as its children do."""
    return pulumi.InvokeOptions(parent=component)
