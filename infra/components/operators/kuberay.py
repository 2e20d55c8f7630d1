"""The KubeRay operator (``ray-operator`` at KUBERAY_VERSION, images/kuberay-operator), watching only
the stack's namespace.

RBAC is one namespaced Role: the rules of the release's ``config/rbac/role.yaml`` minus what this
stack never uses: leader election (one replica, ``--enable-leader-election=false``), Ingresses and
IngressClasses (no ``enableIngress``), OpenShift Routes, Gateway API routes (the
RayServiceIncrementalUpgrade gate is off), pod/service proxies (``--use-kubernetes-proxy`` is
off) and Endpoints (read by nothing in the controllers). ``roles``, ``rolebindings`` and
``serviceaccounts`` stay: with the in-tree autoscaler on, the operator creates the autoscaler's
ServiceAccount and Role, and Kubernetes lets it grant only rules it holds itself (hence ``pods``
patch and ``pods/resize``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.operators import base
from infra.components.operators.crds import KUBERAY, crd_files
from infra.images import ImageRef
from infra.scope import Scope

NAME = "kuberay-operator"
METRICS_PORT = 8080
HEALTH_PORT = 8082
_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]

RULES: list[dict[str, Any]] = [
    {"apiGroups": ["ray.io"], "resources": ["rayclusters", "rayjobs", "rayservices"], "verbs": _CRUD},
    {
        "apiGroups": ["ray.io"],
        "resources": ["rayclusters/status", "rayjobs/status", "rayservices/status"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["ray.io"],
        "resources": ["rayclusters/finalizers", "rayjobs/finalizers", "rayservices/finalizers"],
        "verbs": ["update"],
    },
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": _CRUD},
    {"apiGroups": [""], "resources": ["pods/status", "services/status"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [""], "resources": ["pods/resize"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    # The autoscaler sidecar's identity, created per RayCluster.
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
    # RayJob submitter Jobs; the RayJob controller's cache watches them even when no RayJob exists.
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": _CRUD},
]


INIT_CONTAINER_INJECTION_ENV = "ENABLE_INIT_CONTAINER_INJECTION"


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "operator"}


def build_objects(scope: Scope, image: ImageRef, namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding, Deployment and NetworkPolicy of the operator."""
    labels = scope.object_labels(NAME, component="operator")
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    annotations = {base.TOKEN_NEED_ANNOTATION: "reconciles RayCluster, RayJob and RayService"}
    container = {
        "name": "operator",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": [
            f"--watch-namespace={namespace}",
            "--enable-leader-election=false",
            f"--metrics-addr=:{METRICS_PORT}",
            f"--health-probe-bind-address=:{HEALTH_PORT}",
        ],
        # KubeRay would add a "wait-gcs-ready" init container requesting a fixed 200m CPU to every
        # worker, twice what our workers request, so a worker needed 200m to be scheduled: on the
        # real node 2 of 4 scaled-up workers stayed Pending on CPU. Our RayCluster brings its own,
        # lighter wait (infra/components/ray.py).
        "env": [{"name": INIT_CONTAINER_INJECTION_ENV, "value": "false"}],
        "ports": [
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "securityContext": base.container_security_context(),
        "livenessProbe": base.http_probe("/healthz", HEALTH_PORT, initial_delay=10, period=20),
        "readinessProbe": base.http_probe("/readyz", HEALTH_PORT, initial_delay=5, period=10),
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
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector_labels()},
                "template": {
                    "metadata": {"labels": {**labels, **selector_labels()}, "annotations": annotations},
                    "spec": {
                        "serviceAccountName": NAME,
                        "automountServiceAccountToken": True,
                        "securityContext": base.pod_security_context(),
                        "containers": [container],
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
                # RayCluster reconciliation talks only to the API server.
                "egress": [base.api_server_egress()],
            },
        },
    ]


@dataclass
class KubeRayOperatorArgs:
    scope: Scope
    image: ImageRef


class KubeRayOperator(pulumi.ComponentResource):
    """The KubeRay CRDs and operator; clusters depend on this component."""

    def __init__(self, name: str, args: KubeRayOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:compute:KubeRayOperator", name, None, opts)
        self.deployment_name = base.install_operator(
            self, name, crd_files(KUBERAY), build_objects(args.scope, args.image, args.scope.namespace)
        )
        self.register_outputs({"deployment_name": self.deployment_name})
