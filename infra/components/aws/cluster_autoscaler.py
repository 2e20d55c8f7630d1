"""The cluster-autoscaler on EKS: its IRSA role, the node groups' discovery tags, and our chart.

The autoscaler finds the node groups' Auto Scaling groups by two tag keys (auto-discovery) and
changes only their desired size. Its role may make the Describe calls that take no resource ARN,
read only this stack's EKS node groups, and scale or terminate only in this stack's Auto Scaling
groups, and only while a group carries the ``owned`` tag of this cluster. Groups that may be empty
(``compute``, ``gpu``) also carry node-template tags naming the labels and taints their nodes will
have, so the autoscaler can tell which pending pods a new node would fit before any node of the
group exists (scale from zero).

The chart runs in the stack's namespace (restricted Pod Security, default-deny NetworkPolicies,
one destroy removes it); charts/cluster-autoscaler/README.md says why not ``kube-system``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.charts import local_chart_release
from infra.components.aws import IAM_VERSION, POOL_LABEL
from infra.components.aws.irsa import trust_policy
from infra.components.object_store.s3 import partition
from infra.config import Images
from infra.images import ImageRef
from infra.scope import Scope

RELEASE = "cluster-autoscaler"
# The chart's fullname for this release (it contains the chart name), hence its service account.
SERVICE_ACCOUNT = RELEASE
IMAGE_NAME = "cluster-autoscaler"
TAG_PREFIX = "k8s.io/cluster-autoscaler"
ENABLED_TAG = f"{TAG_PREFIX}/enabled"
NODE_TEMPLATE_PREFIX = f"{TAG_PREFIX}/node-template"
# The groups that never scale to zero need no node template: a live node shows the autoscaler
# what a new one would look like.
ALWAYS_RUNNING_GROUPS: frozenset[str] = frozenset({"system"})
_TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}

# Read-only calls the autoscaler makes to find the groups, their instance types and launch
# templates, and recent scaling failures. None of them accepts a resource ARN (the Service
# Authorization Reference lists no resource type for them), so their statement is the one whose
# Resource is "*".
DESCRIBE_ACTIONS: tuple[str, ...] = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
# The EKS node group's labels, taints and resources (scale from zero); scoped to our node groups.
NODEGROUP_ACTION = "eks:DescribeNodegroup"
# The only changes it makes: a group's desired size, and removing one instance from a group.
SCALE_ACTIONS: tuple[str, ...] = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def owner_tag(cluster: str) -> str:
    """The tag key naming the cluster a group belongs to (its value is ``owned``)."""
    return f"{TAG_PREFIX}/{cluster}"


def discovery_argument(cluster: str) -> str:
    """The autoscaler's ``--node-group-auto-discovery`` value for this cluster (what the chart renders)."""
    return f"asg:tag={ENABLED_TAG},{owner_tag(cluster)}"


def autoscaling_group_tags(
    *, group: str, cluster: str, labels: Mapping[str, str], taints: Sequence[Mapping[str, str]]
) -> dict[str, str]:
    """The tags a node group's Auto Scaling group carries for the autoscaler (pure).

    Both discovery keys on every group (EKS sets them on managed groups too; tagging them here
    makes the IAM condition's premise part of this program). Groups that may be empty also get
    one node-template tag per node label and taint (``<value>:<Effect>``).
    """
    tags = {ENABLED_TAG: "true", owner_tag(cluster): "owned"}
    if group in ALWAYS_RUNNING_GROUPS:
        return tags
    for key, value in sorted(labels.items()):
        tags[f"{NODE_TEMPLATE_PREFIX}/label/{key}"] = value
    for taint in taints:
        tags[f"{NODE_TEMPLATE_PREFIX}/taint/{taint['key']}"] = f"{taint['value']}:{_TAINT_EFFECTS[taint['effect']]}"
    return tags


def autoscaling_group_arn(*, partition: str, region: str, account: str, name: str) -> str:
    """An Auto Scaling group's ARN by name; the middle part is the group's id, which IAM matches by ``*``."""
    return f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}"


def permission_policy(
    *,
    cluster: str,
    partition: str,
    region: str,
    account: str,
    group_names: Sequence[str],
    node_group_arns: Sequence[str],
) -> dict[str, Any]:
    """Describe what takes no ARN; read only our node groups; scale and terminate only in the named
    Auto Scaling groups, and only while they are owned."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {"Sid": "Discover", "Effect": "Allow", "Action": list(DESCRIBE_ACTIONS), "Resource": "*"},
            {
                "Sid": "ReadNodeGroups",
                "Effect": "Allow",
                "Action": NODEGROUP_ACTION,
                "Resource": sorted(node_group_arns),
            },
            {
                "Sid": "ScaleOwnedGroups",
                "Effect": "Allow",
                "Action": list(SCALE_ACTIONS),
                "Resource": [
                    autoscaling_group_arn(partition=partition, region=region, account=account, name=name)
                    for name in sorted(group_names)
                ],
                "Condition": {"StringEquals": {f"aws:ResourceTag/{owner_tag(cluster)}": "owned"}},
            },
        ],
    }


def image_ref(images: Images, tag: str) -> ImageRef:
    """``<images.registry>/cluster-autoscaler:<tag>``: the upstream release mirrored into the stack's registry."""
    return ImageRef(repository=f"{images.registry}/{IMAGE_NAME}", tag=tag, digest="", pull_policy=images.pull_policy)


def chart_values(
    *, scope: Scope, image: ImageRef, cluster: str, region: str, role_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """Values for charts/cluster-autoscaler; scaling flags keep the chart's documented defaults."""
    return {
        "commonLabels": scope.chart_labels(),
        "image": image.chart_values(),
        "aws": {"clusterName": cluster, "region": region, "roleArn": role_arn},
        # On-demand nodes that are never scaled to zero; never a spot node it might remove.
        "nodeSelector": {POOL_LABEL: "system"},
    }


def account_of(arn: str) -> str:
    """The account id field of an ARN (``arn:partition:service:region:account:resource``)."""
    return arn.split(":")[4]


@dataclass
class ClusterAutoscalerArgs:
    cluster_name: str
    region: str
    namespace: str
    """The stack's namespace name: the role trusts exactly its ``cluster-autoscaler`` service account."""
    namespace_ref: pulumi.Input[str]
    """The Tenancy's namespace output: the release waits for the namespace and its baseline."""
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    autoscaling_group_names: Mapping[str, pulumi.Input[str]]
    """Node group -> its Auto Scaling group's name (``EksNodeGroups.autoscaling_group_names``)."""
    node_group_arns: Sequence[pulumi.Input[str]]
    """The EKS node groups' ARNs (``eks:DescribeNodegroup`` is allowed on exactly these)."""
    image: ImageRef
    scope: Scope
    tags: Mapping[str, str]


class ClusterAutoscaler(pulumi.ComponentResource):
    """The autoscaler's IAM role and policy, and the chart's release using that role."""

    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:aws:ClusterAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer).apply(_trust_json(args.namespace))
        role = aws.iam.Role(
            f"{name}-role",
            description=f"IRSA: {args.namespace}/{SERVICE_ACCOUNT} scales the node groups of {args.cluster_name}",
            assume_role_policy=trust,
            tags={**args.tags, "qframe.io/service-account": f"{args.namespace}.{SERVICE_ACCOUNT}"},
            opts=child,
        )
        groups = sorted(args.autoscaling_group_names)
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(
                args.oidc_provider_arn,
                pulumi.Output.all(*args.node_group_arns),
                *(args.autoscaling_group_names[g] for g in groups),
            ).apply(_policy_json(args)),
            opts=child,
        )
        # The pod must find its permissions in place when it first asks AWS.
        local_chart_release(
            f"{name}-release",
            chart="cluster-autoscaler",
            release=RELEASE,
            namespace=args.namespace_ref,
            values=chart_values(
                scope=args.scope, image=args.image, cluster=args.cluster_name, region=args.region, role_arn=role.arn
            ),
            description="cluster-autoscaler",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})


def _trust_json(namespace: str) -> Callable[[list[Any]], str]:
    def build(values: list[Any]) -> str:
        document = trust_policy(
            provider_arn=str(values[0]), issuer=str(values[1]), namespace=namespace, service_account=SERVICE_ACCOUNT
        )
        return json.dumps(document)

    return build


def _policy_json(args: ClusterAutoscalerArgs) -> Callable[[list[Any]], str]:
    """The permission policy from ``[oidc_provider_arn, node group ARNs, *Auto Scaling group names]``
    (the account comes from the provider's ARN)."""

    def build(values: list[Any]) -> str:
        document = permission_policy(
            cluster=args.cluster_name,
            partition=partition(args.region),
            region=args.region,
            account=account_of(str(values[0])),
            group_names=[str(v) for v in values[2:]],
            node_group_arns=[str(v) for v in values[1]],
        )
        return json.dumps(document)

    return build
