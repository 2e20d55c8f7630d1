"""EKS managed node groups: ``system`` (on-demand), ``compute`` (tainted, spot allowed), optional ``gpu``.

One node role serves every group, holding exactly the three AWS-managed policies a node needs: join
the cluster, run the VPC CNI, pull images from ECR. ``compute`` carries a taint that only Dask/Ray
workers and users' servers tolerate, so the platform's services stay on ``system``; ``gpu`` carries
the NVIDIA taint the GPU profiles already tolerate (``NotebookGpu``/``RayGpu`` in infra/config.py)
and the ``qframe.io/gpu`` label they select.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws import COMPUTE_POOL, COMPUTE_TAINT_KEY, POOL_LABEL, managed_policy_arn, service_trust_policy
from infra.components.aws.cluster_autoscaler import autoscaling_group_tags
from infra.components.object_store.s3 import partition
from infra.config import NodeGroups, NodeGroupSettings, instance_architecture

NODE_POLICIES: tuple[str, ...] = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
)
COMPUTE_TAINT = {"key": COMPUTE_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABEL = {"qframe.io/gpu": "true"}
_AMI = {
    ("x86_64", False): "AL2023_x86_64_STANDARD",
    ("arm64", False): "AL2023_ARM_64_STANDARD",
    ("x86_64", True): "AL2023_x86_64_NVIDIA",
    ("arm64", True): "AL2023_ARM_64_NVIDIA",
}
_CAPACITY = {"spot": "SPOT", "on-demand": "ON_DEMAND"}


@dataclass(frozen=True)
class GroupSpec:
    """Everything a node group's resource takes, apart from the cluster, role and subnets."""

    name: str
    instance_types: list[str]
    capacity_type: str
    ami_type: str
    disk_size: int
    scaling: dict[str, int]
    labels: dict[str, str]
    taints: list[dict[str, str]]


def group_specs(groups: NodeGroups) -> list[GroupSpec]:
    """The node groups to create, from config (pure)."""
    specs = [
        _spec("system", groups.system, "on-demand", gpu=False, taints=[]),
        _spec(COMPUTE_POOL, groups.compute, groups.compute.capacity_type, gpu=False, taints=[COMPUTE_TAINT]),
    ]
    if groups.gpu is not None:
        specs.append(_spec("gpu", groups.gpu, groups.gpu.capacity_type, gpu=True, taints=[GPU_TAINT]))
    return specs


def _spec(name: str, group: NodeGroupSettings, capacity: str, *, gpu: bool, taints: list[dict[str, str]]) -> GroupSpec:
    labels = {**group.labels, POOL_LABEL: name, **(GPU_LABEL if gpu else {})}
    return GroupSpec(
        name=name,
        instance_types=list(group.instance_types),
        capacity_type=_CAPACITY[capacity],
        ami_type=_AMI[(instance_architecture(group.instance_types[0]), gpu)],
        disk_size=group.disk_size_gb,
        scaling={"min_size": group.min_size, "desired_size": group.desired_size, "max_size": group.max_size},
        labels=labels,
        taints=[dict(t) for t in taints],
    )


@dataclass
class NodeGroupsArgs:
    settings: NodeGroups
    cluster_name: pulumi.Input[str]
    """The cluster's ``name`` output: every group waits for the cluster."""
    subnet_ids: Sequence[pulumi.Input[str]]
    region: str
    tags: Mapping[str, str]
    autoscaler_cluster: str | None = None
    """The cluster's name when the cluster-autoscaler runs: each group's Auto Scaling group gets its
    discovery and node-template tags (infra/components/aws/cluster_autoscaler.py)."""


class EksNodeGroups(pulumi.ComponentResource):
    """The node role and one managed node group per configured group."""

    groups: dict[str, aws.eks.NodeGroup]
    autoscaling_group_names: dict[str, pulumi.Output[str]]
    """Group -> the name of the Auto Scaling group EKS made for it."""

    def __init__(self, name: str, args: NodeGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:NodeGroups", name, None, opts)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description="EKS managed nodes",
            assume_role_policy=json.dumps(service_trust_policy("ec2.amazonaws.com")),
            tags=tags,
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-role-{policy}",
                role=role.name,
                policy_arn=managed_policy_arn(partition(args.region), policy),
                opts=child,
            )
            for policy in NODE_POLICIES
        ]
        self.groups = {}
        self.autoscaling_group_names = {}
        for spec in group_specs(args.settings):
            self.groups[spec.name] = aws.eks.NodeGroup(
                f"{name}-{spec.name}",
                cluster_name=args.cluster_name,
                node_group_name=spec.name,
                node_role_arn=role.arn,
                subnet_ids=list(args.subnet_ids),
                instance_types=spec.instance_types,
                capacity_type=spec.capacity_type,
                ami_type=spec.ami_type,
                disk_size=spec.disk_size,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(**spec.scaling),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                labels=spec.labels,
                taints=[aws.eks.NodeGroupTaintArgs(**taint) for taint in spec.taints],
                tags={**tags, POOL_LABEL: spec.name},
                # Nodes without the policies never join; the autoscaler owns the size after creation.
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=attachments, ignore_changes=["scalingConfig.desiredSize"]
                ),
            )
            asg_name = self.groups[spec.name].resources.apply(_autoscaling_group_name)
            self.autoscaling_group_names[spec.name] = asg_name
            if args.autoscaler_cluster is not None:
                # Node group tags stay on the EKS object; the autoscaler reads the Auto Scaling group's.
                asg_tags = autoscaling_group_tags(
                    group=spec.name, cluster=args.autoscaler_cluster, labels=spec.labels, taints=spec.taints
                )
                for key, value in asg_tags.items():
                    aws.autoscaling.Tag(
                        f"{name}-{spec.name}-asg-tag-{key}",
                        autoscaling_group_name=asg_name,
                        tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                        opts=child,
                    )
        self.register_outputs(
            {
                "groups": {key: group.arn for key, group in self.groups.items()},
                "autoscaling_group_names": self.autoscaling_group_names,
            }
        )


def _autoscaling_group_name(resources: Any) -> str:
    """The one Auto Scaling group among a managed node group's resources (typed outputs, or plain dicts)."""
    first = resources[0]
    groups = first["autoscaling_groups"] if isinstance(first, dict) else first.autoscaling_groups
    group = groups[0]
    return str(group["name"] if isinstance(group, dict) else group.name)
