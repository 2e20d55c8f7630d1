"""The providers of a stack, built once by the program and handed to components via ``providers=``.

Components never build providers: a child resource finds its provider through its parent, so one
AWS provider (one region, one set of default tags) serves every AWS resource of the stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PROJECT, AwsSettings


def kubernetes_provider() -> k8s.Provider:
    # The cluster comes from the ambient kubeconfig (KUBECONFIG or kubernetes:context); stacks
    # with aws.eks use eks_kubernetes_provider instead.
    return k8s.Provider("k8s", enable_server_side_apply=True)


def eks_kubernetes_provider(kubeconfig: pulumi.Input[str], nodes: Sequence[pulumi.Resource]) -> k8s.Provider:
    """The provider for a cluster the stack creates (``EksCluster.kubeconfig``).

    It waits for the node groups, so every Kubernetes object (all use this provider) is created
    once there are nodes to run on, instead of timing out on Pending pods while nodes still boot.
    """
    return k8s.Provider(
        "k8s", kubeconfig=kubeconfig, enable_server_side_apply=True, opts=pulumi.ResourceOptions(depends_on=nodes)
    )


def aws_tags(aws_cfg: AwsSettings, *, environment: str, stack: str) -> dict[str, str]:
    """The stack's AWS tags plus the platform's standard tags (which win on a clash)."""
    return {**aws_cfg.tags, "project": PROJECT, "stack": stack, "environment": environment}


def aws_provider(region: str, tags: dict[str, str]) -> aws.Provider:
    """The stack's one AWS provider; ``tags`` (``aws_tags``) become every AWS resource's default tags."""
    return aws.Provider("aws", region=region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
