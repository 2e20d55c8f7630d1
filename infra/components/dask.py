"""The shared Dask cluster: a DaskCluster and its DaskAutoscaler, reconciled by the dask-kubernetes
operator, plus the NetworkPolicies and the RBAC notebook users need for clusters of their own.

Scaling (docs/autoscaling.md): the operator asks the scheduler for its adaptive target every 5 s,
clamps it to ``[minWorkers, maxWorkers]``, removes at most a quarter of the workers per step and
waits 15 s after every change. Workers to remove are retired through the scheduler first, which
moves the results they hold to the remaining workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.aws import DASK_WORKERS_SERVICE_ACCOUNT, ROLE_ARN_ANNOTATION
from infra.components.operators import base
from infra.components.operators.dask import CLUSTER_LABEL, DASHBOARD_PORT, SCHEDULER_PORT
from infra.components.operators.dask import selector_labels as operator_selector
from infra.components.operators.platform_env import (
    ComputePlatform,
    client_labels,
    compute_placement,
    env,
    worker_identity,
)
from infra.config import DaskSettings
from infra.images import ImageRef
from infra.quantities import parse_quantity
from infra.scope import Scope

CLUSTER = "dask"
SCHEDULER_ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
]
WORKER_DASHBOARD_PORT = 8788
# Pods with this label (notebooks) may open the scheduler and its dashboard.
CLIENT_LABEL = {"qframe.io/dask-client": "true"}
# The service account notebook users' pods run as to create their own KubeClusters.
USERS_SERVICE_ACCOUNT = "dask-users"
# Exactly what dask_kubernetes.operator.KubeCluster calls: create/scale/delete its cluster, worker
# groups and autoscaler; find the scheduler pod and Service; read pod logs (get_logs).
USER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["kubernetes.dask.org"],
        "resources": ["daskclusters", "daskworkergroups", "daskautoscalers"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskworkergroups/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def scheduler_address(namespace: str, cluster: str = CLUSTER) -> str:
    """The operator names the scheduler Service ``<cluster>-scheduler``."""
    return f"tcp://{cluster}-scheduler.{namespace}.svc:{SCHEDULER_PORT}"


def dashboard_url(namespace: str, cluster: str = CLUSTER) -> str:
    return f"http://{cluster}-scheduler.{namespace}.svc:{DASHBOARD_PORT}/status"


def _cluster_labels(scope: Scope, platform: ComputePlatform) -> dict[str, str]:
    # The operator copies the DaskCluster's labels onto the scheduler and worker pods.
    return {**scope.object_labels("dask", component="cluster"), **client_labels(platform)}


def _container(
    name: str, image: ImageRef, args: list[str], resources: dict[str, Any], platform: ComputePlatform
) -> dict[str, Any]:
    _, mount = base.tmp_volume()
    return {
        "name": name,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": args,
        "env": env(platform),
        "resources": resources,
        "securityContext": base.container_security_context(),
        "volumeMounts": [mount],
    }


def _pod_spec(container: dict[str, Any]) -> dict[str, Any]:
    volume, _ = base.tmp_volume()
    return {
        "automountServiceAccountToken": False,
        "securityContext": base.pod_security_context(),
        "containers": [container],
        "volumes": [volume],
    }


def build_cluster(scope: Scope, settings: DaskSettings, image: ImageRef, platform: ComputePlatform) -> dict[str, Any]:
    """The DaskCluster: scheduler (comm 8786, dashboard 8787) and workers, floor replicas at start."""
    scheduler = _container(
        "scheduler",
        image,
        [
            "dask",
            "scheduler",
            "--host",
            "0.0.0.0",  # noqa: S104 - reached through its Service from workers, clients and the operator
            "--port",
            str(SCHEDULER_PORT),
            "--dashboard-address",
            f":{DASHBOARD_PORT}",
        ],
        base.resources(settings.scheduler_resources),
        platform,
    )
    # The operator asks for the adaptive target and retires workers through the scheduler's HTTP API
    # (falling back to the comm port); the API is not among distributed's default routes.
    scheduler["env"].append({"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": str(SCHEDULER_ROUTES)})
    scheduler["ports"] = [
        {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
        {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
    ]
    # The dask-kubernetes CRD types probe ports as strings (format int-or-string): named ports only.
    scheduler["readinessProbe"] = base.http_probe("/health", "http-dashboard", initial_delay=5, period=5)
    scheduler["livenessProbe"] = base.http_probe("/health", "http-dashboard", initial_delay=15, period=20)
    memory_limit = int(parse_quantity(settings.worker_resources.limits.memory))
    worker = _container(
        "worker",
        image,
        [
            "dask",
            "worker",
            # DASK_SCHEDULER_ADDRESS and DASK_WORKER_NAME are set by the operator.
            "--name",
            "$(DASK_WORKER_NAME)",
            "--nthreads",
            str(settings.worker_threads),
            "--memory-limit",
            str(memory_limit),
            "--dashboard-address",
            f":{WORKER_DASHBOARD_PORT}",
        ],
        base.resources(settings.worker_resources),
        platform,
    )
    worker["ports"] = [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}]
    worker["readinessProbe"] = base.http_probe("/health", "http-dashboard", initial_delay=5, period=5)
    worker["livenessProbe"] = base.http_probe("/health", "http-dashboard", initial_delay=15, period=20)
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": CLUSTER, "namespace": scope.namespace, "labels": _cluster_labels(scope, platform)},
        "spec": {
            "worker": {
                "replicas": settings.min_workers,
                "spec": {
                    **_pod_spec(worker),
                    **compute_placement(platform),
                    **worker_identity(platform, DASK_WORKERS_SERVICE_ACCOUNT),
                },
            },
            "scheduler": {
                "spec": _pod_spec(scheduler),
                "service": {
                    "type": "ClusterIP",
                    "selector": {CLUSTER_LABEL: CLUSTER, "dask.org/component": "scheduler"},
                    "ports": [
                        {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
                        {
                            "name": "http-dashboard",
                            "protocol": "TCP",
                            "port": DASHBOARD_PORT,
                            "targetPort": "http-dashboard",
                        },
                    ],
                },
            },
        },
    }


def build_autoscaler(scope: Scope, settings: DaskSettings) -> dict[str, Any]:
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {
            "name": CLUSTER,
            "namespace": scope.namespace,
            "labels": scope.object_labels("dask", component="autoscaler"),
            "annotations": dict(base.STACK_WINS_ANNOTATIONS),
        },
        "spec": {"cluster": CLUSTER, "minimum": settings.min_workers, "maximum": settings.max_workers},
    }


def _any_dask_pod() -> dict[str, Any]:
    return {"podSelector": {"matchExpressions": [{"key": CLUSTER_LABEL, "operator": "Exists"}]}}


def build_network_policies(scope: Scope) -> list[dict[str, Any]]:
    """Pods of every Dask cluster in the namespace (the shared one and users' KubeClusters) reach each
    other; clients and the operator reach schedulers on 8786/8787; clients get the matching egress."""
    labels = scope.object_labels("dask", component="network-policy")
    clients = {"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "dask-clusters", "namespace": scope.namespace, "labels": labels},
            "spec": {
                "podSelector": _any_dask_pod()["podSelector"],
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [_any_dask_pod()]},
                    {
                        "from": [clients, {"podSelector": {"matchLabels": operator_selector()}}],
                        "ports": base.ports(SCHEDULER_PORT, DASHBOARD_PORT),
                    },
                ],
                "egress": [{"to": [_any_dask_pod()]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "dask-clients", "namespace": scope.namespace, "labels": labels},
            "spec": {
                "podSelector": clients["podSelector"],
                "policyTypes": ["Egress"],
                "egress": [{"to": [_any_dask_pod()], "ports": base.ports(SCHEDULER_PORT, DASHBOARD_PORT)}],
            },
        },
    ]


def build_user_rbac(scope: Scope, role_arn: pulumi.Input[str] | None = None) -> list[dict[str, Any]]:
    """A ServiceAccount with exactly KubeCluster's rules, for notebook pods that create clusters.

    Users' servers run as this account, so on S3 stacks on EKS it also carries the ``notebooks``
    IRSA role (``role_arn``), whose trust names exactly this account.
    """
    labels = scope.object_labels("dask", component="users")
    meta = {"name": USERS_SERVICE_ACCOUNT, "namespace": scope.namespace, "labels": labels}
    account_meta: dict[str, Any] = dict(meta)
    if role_arn is not None:
        account_meta["annotations"] = {ROLE_ARN_ANNOTATION: role_arn}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": account_meta,
            # Pods that need it opt in (and carry the annotation the security rules ask for).
            "automountServiceAccountToken": False,
        },
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": USER_RULES},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": USERS_SERVICE_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": USERS_SERVICE_ACCOUNT, "namespace": scope.namespace}],
        },
    ]


@dataclass
class DaskClusterArgs:
    scope: Scope
    settings: DaskSettings
    image: ImageRef
    platform: ComputePlatform
    depends_on: list[pulumi.Resource]
    """The operator (when the stack installs it) and the services whose Secrets the pods read."""
    users_role_arn: pulumi.Input[str] | None = None
    """The ``notebooks`` IRSA role, for the account users' servers run as (S3 stacks on EKS)."""


class DaskCluster(pulumi.ComponentResource):
    scheduler_address: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: DaskClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:compute:DaskCluster", name, None, opts)
        scope = args.scope
        policies = pulumi.ResourceOptions(parent=self)
        for policy in build_network_policies(scope):
            base.register(f"{name}-{policy['metadata']['name']}", policy, policies)
        for obj in build_user_rbac(scope, args.users_role_arn):
            base.register(f"{name}-users-{obj['kind'].lower()}", obj, policies)
        after = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        cluster = base.register(
            f"{name}-cluster", build_cluster(scope, args.settings, args.image, args.platform), after
        )
        base.register(
            f"{name}-autoscaler",
            build_autoscaler(scope, args.settings),
            pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )
        self.scheduler_address = pulumi.Output.from_input(scheduler_address(scope.namespace))
        self.dashboard_url = pulumi.Output.from_input(dashboard_url(scope.namespace))
        self.register_outputs({"scheduler_address": self.scheduler_address, "dashboard_url": self.dashboard_url})
