"""The dask-kubernetes operator: kopf running ``dask_kubernetes.operator.controller`` from the
pinned wheel (images/dask-operator), watching only the stack's namespace.

RBAC: one namespaced Role for everything it reconciles, and a ClusterRole with two read-only rules
kopf's framework needs at start-up: list/watch ``namespaces`` and ``customresourcedefinitions``.
Without them kopf still starts (measured on the API-server-only cluster), but only after nine
refused attempts each (~55 s), and it would never notice a CRD change until restarted. kopf runs
``--standalone`` (no peering objects, so no ``clusterkopfpeerings`` rule) and no admission webhooks
(no webhook configuration rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.operators import base
from infra.components.operators.crds import DASK, crd_files
from infra.config import PROJECT
from infra.images import ImageRef
from infra.scope import Scope

NAME = "dask-operator"
HEALTH_PORT = 8080
# The scheduler's comm and HTTP ports: the operator asks the scheduler for its adaptive target and
# retires workers through them before removing their pods.
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
CLUSTER_LABEL = "dask.org/cluster-name"

RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["kubernetes.dask.org"],
        "resources": [
            "daskclusters",
            "daskworkergroups",
            "daskworkergroups/scale",
            "daskjobs",
            "daskjobs/status",
            "daskautoscalers",
        ],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # Scheduler Deployment and Service, one Deployment per worker, DaskJob runner pods.
    {
        "apiGroups": [""],
        "resources": ["pods", "services"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # kopf reports handler progress as events on the objects.
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]


CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]


def cluster_role_name(namespace: str) -> str:
    """Cluster-scoped, so named per stack namespace: two stacks on one cluster never share it."""
    return f"{NAME}-{namespace}"


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "operator"}


def build_objects(scope: Scope, image: ImageRef, namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding, Deployment and NetworkPolicy of the operator."""
    labels = scope.object_labels(NAME, component="operator")
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    annotations = {base.TOKEN_NEED_ANNOTATION: "reconciles DaskCluster, DaskWorkerGroup, DaskJob and DaskAutoscaler"}
    volume, mount = base.tmp_volume("256Mi")
    container = {
        "name": "operator",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": [
            "kopf",
            "run",
            "--standalone",
            f"--namespace={namespace}",
            f"--liveness=http://0.0.0.0:{HEALTH_PORT}/healthz",
            "-m",
            "dask_kubernetes.operator.controller",
        ],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "securityContext": base.container_security_context(),
        "livenessProbe": base.http_probe("/healthz", HEALTH_PORT, initial_delay=10, period=20),
        "readinessProbe": base.http_probe("/healthz", HEALTH_PORT, initial_delay=5, period=10),
        "volumeMounts": [mount],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {**meta, "annotations": annotations},
            "automountServiceAccountToken": True,
        },
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": RULES},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role_name(namespace), "labels": labels},
            "rules": CLUSTER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_role_name(namespace), "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role_name(namespace),
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                # Two kopf instances without peering would both handle every event.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector_labels()},
                "template": {
                    "metadata": {
                        "labels": {**labels, **selector_labels()},
                        "annotations": annotations,
                    },
                    "spec": {
                        "serviceAccountName": NAME,
                        "automountServiceAccountToken": True,
                        "securityContext": base.pod_security_context(),
                        "containers": [container],
                        "volumes": [volume],
                    },
                },
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta,
            "spec": {
                "podSelector": {"matchLabels": selector_labels()},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    base.api_server_egress(),
                    {
                        "to": [{"podSelector": {"matchExpressions": [{"key": CLUSTER_LABEL, "operator": "Exists"}]}}],
                        "ports": base.ports(SCHEDULER_PORT, DASHBOARD_PORT),
                    },
                ],
            },
        },
    ]


@dataclass
class DaskOperatorArgs:
    scope: Scope
    image: ImageRef


class DaskOperator(pulumi.ComponentResource):
    """The dask-kubernetes CRDs and operator; clusters depend on this component."""

    def __init__(self, name: str, args: DaskOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:compute:DaskOperator", name, None, opts)
        self.deployment_name = base.install_operator(
            self, name, crd_files(DASK), build_objects(args.scope, args.image, args.scope.namespace)
        )
        self.register_outputs({"deployment_name": self.deployment_name, "managed_by": PROJECT})
