"""Chart unit tests for charts/cluster-autoscaler with the real helm: command line, RBAC, identity, policies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.components.aws.cluster_autoscaler import chart_values, discovery_argument, image_ref
from infra.config import Images
from infra.scope import Scope
from tests.harness import charts, security

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "cluster-autoscaler"
NAMESPACE = "qframe"
ROLE_ARN = "arn:aws:iam::123456789012:role/cluster-autoscaler-role"
# What the aws stack passes (infra/components/aws/cluster_autoscaler.py builds it, the role ARN aside).
STACK_VALUES = chart_values(
    scope=Scope(namespace=NAMESPACE),
    image=image_ref(Images(registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com/qframe"), "v1.32.4"),
    cluster="qframe-research-aws",
    region="eu-west-1",
    role_arn=ROLE_ARN,
)


def render(values: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(CHART, values or {}, namespace=NAMESPACE, release="cluster-autoscaler")


def container(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (found,) = objects["Deployment", "cluster-autoscaler"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


def flags(objects: Mapping[tuple[str, str], dict[str, Any]]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for arg in container(objects)["args"]:
        key, _, value = arg.partition("=")
        parsed.setdefault(key, []).append(value)
    return parsed


def test_stack_values_render_the_expected_objects() -> None:
    assert sorted(render(STACK_VALUES)) == [
        ("ClusterRole", "qframe-cluster-autoscaler"),
        ("ClusterRoleBinding", "qframe-cluster-autoscaler"),
        ("Deployment", "cluster-autoscaler"),
        ("NetworkPolicy", "cluster-autoscaler"),
        ("NetworkPolicy", "cluster-autoscaler-default-deny"),
        ("Role", "cluster-autoscaler"),
        ("RoleBinding", "cluster-autoscaler"),
        ("Service", "cluster-autoscaler"),
        ("ServiceAccount", "cluster-autoscaler"),
    ]


def test_command_line_discovers_the_clusters_groups_with_the_documented_defaults() -> None:
    objects = render(STACK_VALUES)
    assert container(objects)["command"] == ["/cluster-autoscaler"]
    assert container(objects)["image"] == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/qframe/cluster-autoscaler:v1.32.4"
    )
    assert flags(objects) == {
        "--cloud-provider": ["aws"],
        "--node-group-auto-discovery": [discovery_argument("qframe-research-aws")],
        "--namespace": [NAMESPACE],
        "--leader-elect-resource-name": ["cluster-autoscaler"],
        "--status-config-map-name": ["cluster-autoscaler-status"],
        "--address": [":8085"],
        "--expander": ["least-waste"],
        "--balance-similar-node-groups": ["true"],
        "--balancing-ignore-label": [
            "eks.amazonaws.com/nodegroup",
            "eks.amazonaws.com/nodegroup-image",
            "eks.amazonaws.com/sourceLaunchTemplateId",
            "eks.amazonaws.com/sourceLaunchTemplateVersion",
        ],
        "--skip-nodes-with-local-storage": ["false"],
        "--skip-nodes-with-system-pods": ["true"],
        "--scale-down-enabled": ["true"],
        "--scale-down-delay-after-add": ["10m"],
        "--scale-down-unneeded-time": ["10m"],
        "--scale-down-utilization-threshold": ["0.5"],
        "--max-node-provision-time": ["15m"],
        "--scan-interval": ["10s"],
        "--v": ["2"],
    }
    assert flags(objects)["--node-group-auto-discovery"] == [
        "asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/qframe-research-aws"
    ]
    env = {e["name"]: e["value"] for e in container(objects)["env"]}
    assert env["AWS_REGION"] == "eu-west-1"


def test_scaling_values_reach_the_flags() -> None:
    objects = render(
        {
            "autoscaling": {
                "expander": "most-pods",
                "skipNodesWithLocalStorage": True,
                "scaleDown": {"enabled": False, "unneededTime": "30m", "utilizationThreshold": "0.3"},
            }
        }
    )
    parsed = flags(objects)
    assert parsed["--expander"] == ["most-pods"]
    assert parsed["--skip-nodes-with-local-storage"] == ["true"]
    assert parsed["--scale-down-enabled"] == ["false"]
    assert parsed["--scale-down-unneeded-time"] == ["30m"]
    assert parsed["--scale-down-utilization-threshold"] == ["0.3"]


def test_service_account_carries_the_irsa_role_and_only_the_pod_mounts_a_token() -> None:
    objects = render(STACK_VALUES)
    account = objects["ServiceAccount", "cluster-autoscaler"]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert account["automountServiceAccountToken"] is False
    pod = objects["Deployment", "cluster-autoscaler"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "cluster-autoscaler"
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert pod["metadata"]["annotations"][security.TOKEN_NEED_ANNOTATION]
    # Without a role the account has no annotation (and the pod no AWS credentials).
    assert "annotations" not in render()["ServiceAccount", "cluster-autoscaler"]["metadata"]


def test_pod_is_critical_pinned_to_system_nodes_and_never_evicts_itself() -> None:
    pod = render(STACK_VALUES)["Deployment", "cluster-autoscaler"]["spec"]["template"]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["nodeSelector"] == {"qframe.io/node-pool": "system"}
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert (
        "priorityClassName"
        not in render({"priorityClassName": ""})["Deployment", "cluster-autoscaler"]["spec"]["template"]["spec"]
    )


def test_workload_follows_the_security_rules() -> None:
    objects = render(STACK_VALUES)
    deployment = objects["Deployment", "cluster-autoscaler"]
    assert security.violations(deployment) == []
    context = container(objects)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532
    assert container(objects)["resources"] == {
        "requests": {"cpu": "100m", "memory": "300Mi"},
        "limits": {"cpu": "1", "memory": "600Mi"},
    }


def test_cluster_rbac_is_exactly_what_the_autoscaler_needs() -> None:
    objects = render(STACK_VALUES)
    assert objects["ClusterRole", "qframe-cluster-autoscaler"]["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "update"]},
        {
            "apiGroups": [""],
            "resources": [
                "namespaces",
                "pods",
                "services",
                "replicationcontrollers",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets", "replicasets", "statefulsets"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["storage.k8s.io"],
            "resources": ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    binding = objects["ClusterRoleBinding", "qframe-cluster-autoscaler"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": NAMESPACE}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "qframe-cluster-autoscaler",
    }


def test_namespaced_rbac_names_its_configmap_and_lease() -> None:
    objects = render(STACK_VALUES)
    role = objects["Role", "cluster-autoscaler"]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["cluster-autoscaler-status"],
            "verbs": ["get", "update", "delete"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["cluster-autoscaler"],
            "verbs": ["get", "update"],
        },
    ]
    assert objects["RoleBinding", "cluster-autoscaler"]["roleRef"]["name"] == "cluster-autoscaler"
    # The names the Role grants are the ones the autoscaler is told to use.
    parsed = flags(objects)
    assert parsed["--status-config-map-name"] == role["rules"][1]["resourceNames"]
    assert parsed["--leader-elect-resource-name"] == role["rules"][3]["resourceNames"]


def test_cluster_role_name_includes_the_namespace() -> None:
    objects = charts.render_by_name(CHART, {}, namespace="team-b", release="cluster-autoscaler")
    assert ("ClusterRole", "team-b-cluster-autoscaler") in objects
    assert ("ClusterRoleBinding", "team-b-cluster-autoscaler") in objects


def test_network_policy_opens_443_and_dns_and_admits_no_one_by_default() -> None:
    policy = render(STACK_VALUES)["NetworkPolicy", "cluster-autoscaler"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]
    egress = policy["spec"]["egress"]
    assert egress[0] == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    assert [p["port"] for p in egress[1]["ports"]] == [53, 53]
    assert len(egress) == 2


def test_metrics_clients_are_admitted_to_the_metrics_port_only() -> None:
    prometheus = {"podSelector": {"matchLabels": {"app": "prometheus"}}}
    objects = render({"networkPolicy": {"allowedClients": [prometheus]}})
    [rule] = objects["NetworkPolicy", "cluster-autoscaler"]["spec"]["ingress"]
    assert rule == {"from": [prometheus], "ports": [{"protocol": "TCP", "port": 8085}]}
    egress = objects["NetworkPolicy", "cluster-autoscaler-client-egress-0"]["spec"]
    assert egress["podSelector"] == prometheus["podSelector"]
    assert egress["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8085}]


def test_pod_disruption_budget_only_with_more_than_one_replica() -> None:
    assert ("PodDisruptionBudget", "cluster-autoscaler") not in render()
    budget = render({"replicas": 2})["PodDisruptionBudget", "cluster-autoscaler"]
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"aws": {"clusterName": "bad name"}}, "clusterName"),
        ({"aws": {"roleArn": "arn:aws:iam::123:user/x"}}, "roleArn"),
        ({"aws": {"region": "Europe"}}, "region"),
        ({"autoscaling": {"expander": "priority"}}, "expander"),
        ({"autoscaling": {"scaleDown": {"unneededTime": "10 minutes"}}}, "unneededTime"),
        ({"autoscaling": {"scaleDown": {"utilizationThreshold": "1.5"}}}, "utilizationThreshold"),
        ({"image": {"tag": "latest"}}, "tag"),
        ({"networkPolicy": {"egress": []}}, "egress"),
        ({"replicas": 5}, "replicas"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_refuses_bad_values_naming_the_key(values: dict[str, Any], key: str, tmp_path: Path) -> None:
    message = charts.rejection_message(CHART, values, tmp_path, release="cluster-autoscaler")
    assert key in message, message
