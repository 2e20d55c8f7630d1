"""The cluster-autoscaler on the ``aws`` stack under mocks: its IRSA role, the node groups' tags, the release.

Asserted from the inputs the mock engine received; AWS-computed names and ARNs are the stand-ins of
``infra.offline.computed_outputs`` (a managed group's Auto Scaling group is ``eks-<group>-mock``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components.aws.cluster_autoscaler import (
    ALWAYS_RUNNING_GROUPS,
    autoscaling_group_tags,
    discovery_argument,
    permission_policy,
)
from infra.offline import MOCK_ACCOUNT, REPO_ROOT, ProgramRun, load_stack_file, run_program

pytestmark = pytest.mark.unit

AWS_STACK = REPO_ROOT / "Pulumi.aws.yaml"
EKS_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "stacks" / "aws-eks.happy.yaml"
CLUSTER = "qframe-research-aws"
ISSUER = "oidc.mock-eks.example/id/eks-cluster"
TAG = "aws:autoscaling/tag:Tag"
RELEASE = "kubernetes:helm.sh/v3:Release"
OWNED = f"k8s.io/cluster-autoscaler/{CLUSTER}"


@pytest.fixture(scope="module")
def aws_run() -> ProgramRun:
    return run_program(AWS_STACK)


def eks_override(**changes: Any) -> dict[str, Any]:
    aws = json.loads(load_stack_file(AWS_STACK)["qframe-research:aws"])
    aws["eks"] = {**aws["eks"], **changes}
    return {"aws": aws}


def asg_tags(run: ProgramRun) -> dict[str, dict[str, str]]:
    """Auto Scaling group name -> {tag key: value}, asserting no tag is copied onto instances."""
    found: dict[str, dict[str, str]] = {}
    for resource in run.of_type(TAG):
        tag = resource.inputs["tag"]
        assert tag["propagateAtLaunch"] is False, resource.name
        found.setdefault(resource.inputs["autoscalingGroupName"], {})[tag["key"]] = tag["value"]
    return found


def test_the_aws_stack_deploys_the_autoscaler_with_its_role_and_chart(aws_run: ProgramRun) -> None:
    component = aws_run.one("qframe:aws:ClusterAutoscaler", "cluster-autoscaler")
    role = aws_run.one("aws:iam/role:Role", "cluster-autoscaler-role")
    policy = aws_run.one("aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy")
    release = aws_run.one(RELEASE, "cluster-autoscaler-release")
    for child in (role, policy, release):
        assert child.parent == component.urn, child.name
    assert release.inputs["chart"] == "charts/cluster-autoscaler"
    assert release.inputs["name"] == "cluster-autoscaler"
    assert release.inputs["namespace"] == "qframe"
    assert release.inputs["values"] == {
        "commonLabels": {"team": "research", "qframe.io/stack-namespace": "qframe"},
        "image": {
            "repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/qframe/cluster-autoscaler",
            "tag": "v1.32.4",
            "digest": "",
            "pullPolicy": "IfNotPresent",
        },
        "aws": {
            "clusterName": CLUSTER,
            "region": "eu-west-1",
            "roleArn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/cluster-autoscaler-role",
        },
        "nodeSelector": {"qframe.io/node-pool": "system"},
    }
    assert policy.inputs["role"] == "cluster-autoscaler-role-id"
    # Its image gets an ECR repository like every image the stack runs.
    assert aws_run.one("aws:ecr/repository:Repository", "ecr-qframe-cluster-autoscaler").inputs["name"] == (
        "qframe/cluster-autoscaler"
    )


def test_release_waits_for_its_permissions_the_node_groups_and_the_namespace(aws_run: ProgramRun) -> None:
    component = aws_run.one("qframe:aws:ClusterAutoscaler")
    release = aws_run.one(RELEASE, "cluster-autoscaler-release")
    policy = aws_run.one("aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy")
    assert policy.urn in release.depends_on
    assert aws_run.one("kubernetes:core/v1:Namespace").urn in release.depends_on
    groups = {g.urn for g in aws_run.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups
    assert groups <= set(component.depends_on)
    provider = aws_run.one("pulumi:providers:kubernetes")
    assert release.provider.startswith(provider.urn)


def test_policy_document_is_exact(aws_run: ProgramRun) -> None:
    policy = json.loads(aws_run.one("aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy").inputs["policy"])
    arn = f"arn:aws:autoscaling:eu-west-1:{MOCK_ACCOUNT}:autoScalingGroup:*:autoScalingGroupName"
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Discover",
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                ],
                # These calls take no resource ARNs: the one statement whose Resource is "*".
                "Resource": "*",
            },
            {
                "Sid": "ReadNodeGroups",
                "Effect": "Allow",
                "Action": "eks:DescribeNodegroup",
                "Resource": [
                    f"arn:aws:eks:mock:{MOCK_ACCOUNT}:nodegroup/{CLUSTER}/compute/mock-id",
                    f"arn:aws:eks:mock:{MOCK_ACCOUNT}:nodegroup/{CLUSTER}/system/mock-id",
                ],
            },
            {
                "Sid": "ScaleOwnedGroups",
                "Effect": "Allow",
                "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                "Resource": [f"{arn}/eks-compute-mock", f"{arn}/eks-system-mock"],
                "Condition": {"StringEquals": {f"aws:ResourceTag/{OWNED}": "owned"}},
            },
        ],
    }


def test_only_describe_actions_get_the_wildcard_resource() -> None:
    document = permission_policy(
        cluster="c", partition="aws", region="r", account="1", group_names=["b", "a"], node_group_arns=["n2", "n1"]
    )
    discover, read, scale = document["Statement"]
    assert discover["Resource"] == "*"
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in discover["Action"]), discover
    assert "eks:DescribeNodegroup" not in discover["Action"]
    assert read["Resource"] == ["n1", "n2"]
    assert not any(a.split(":")[1].startswith(("Describe", "Get")) for a in scale["Action"]), scale
    assert scale["Condition"] == {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/c": "owned"}}
    assert scale["Resource"] == [
        "arn:aws:autoscaling:r:1:autoScalingGroup:*:autoScalingGroupName/a",
        "arn:aws:autoscaling:r:1:autoScalingGroup:*:autoScalingGroupName/b",
    ]


def test_trust_names_exactly_the_chart_service_account(aws_run: ProgramRun) -> None:
    trust = json.loads(aws_run.one("aws:iam/role:Role", "cluster-autoscaler-role").inputs["assumeRolePolicy"])
    assert trust == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{ISSUER}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{ISSUER}:sub": "system:serviceaccount:qframe:cluster-autoscaler",
                        f"{ISSUER}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def test_node_groups_carry_discovery_and_scale_from_zero_tags(aws_run: ProgramRun) -> None:
    assert asg_tags(aws_run) == {
        "eks-system-mock": {"k8s.io/cluster-autoscaler/enabled": "true", OWNED: "owned"},
        "eks-compute-mock": {
            "k8s.io/cluster-autoscaler/enabled": "true",
            OWNED: "owned",
            "k8s.io/cluster-autoscaler/node-template/label/qframe.io/node-pool": "compute",
            "k8s.io/cluster-autoscaler/node-template/taint/qframe.io/compute": "true:NoSchedule",
        },
    }
    # The chart discovers exactly the groups tagged with both keys.
    assert discovery_argument(CLUSTER) == f"asg:tag=k8s.io/cluster-autoscaler/enabled,{OWNED}"


def test_gpu_group_tags_name_its_labels_and_the_nvidia_taint() -> None:
    run = run_program(EKS_FIXTURE)
    cluster = "qframe-research-aws-eks"
    tags = asg_tags(run)
    gpu = tags["eks-gpu-mock"]
    template = "k8s.io/cluster-autoscaler/node-template"
    assert gpu[f"{template}/label/qframe.io/node-pool"] == "gpu"
    assert gpu[f"{template}/label/qframe.io/gpu"] == "true"
    assert gpu[f"{template}/taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert gpu[f"k8s.io/cluster-autoscaler/{cluster}"] == "owned"
    # Every node label the group sets (including config labels) is in its template.
    group = run.one("aws:eks/nodeGroup:NodeGroup", "node-groups-gpu")
    labels = {k.removeprefix(f"{template}/label/"): v for k, v in gpu.items() if k.startswith(f"{template}/label/")}
    assert labels == group.inputs["labels"]
    assert sorted(tags) == ["eks-compute-mock", "eks-gpu-mock", "eks-system-mock"]


def test_always_running_groups_get_no_node_template() -> None:
    assert {"system"} == ALWAYS_RUNNING_GROUPS
    tags = autoscaling_group_tags(group="system", cluster="c", labels={"a": "b"}, taints=[])
    assert tags == {"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/c": "owned"}


def test_disabled_autoscaler_registers_nothing_of_it() -> None:
    run = run_program(AWS_STACK, overrides=eks_override(clusterAutoscaler={"enabled": False}))
    assert not run.of_type("qframe:aws:ClusterAutoscaler")
    assert not run.of_type(TAG)
    assert not [r for r in run.of_type(RELEASE) if r.name.startswith("cluster-autoscaler")]
    assert "qframe/cluster-autoscaler" not in [r.inputs["name"] for r in run.of_type("aws:ecr/repository:Repository")]


def test_image_tag_from_config() -> None:
    run = run_program(AWS_STACK, overrides=eks_override(clusterAutoscaler={"imageTag": "v1.32.1"}))
    values = run.one(RELEASE, "cluster-autoscaler-release").inputs["values"]
    assert values["image"]["tag"] == "v1.32.1"
    newer = run_program(AWS_STACK, overrides=eks_override(version="1.33"))
    assert newer.one(RELEASE, "cluster-autoscaler-release").inputs["values"]["image"]["tag"] == "v1.33.2"


def test_no_autoscaler_off_eks() -> None:
    run = run_program(REPO_ROOT / "Pulumi.dev.yaml")
    assert not run.of_type("qframe:aws:ClusterAutoscaler")
    assert not [r for r in run.of_type(RELEASE) if r.name.startswith("cluster-autoscaler")]
