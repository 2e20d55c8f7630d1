"""The shared Ray cluster: one RayCluster with KubeRay's in-tree autoscaler, plus its NetworkPolicies.

Scaling (docs/autoscaling.md): the autoscaler sidecar in the head pod adds workers while tasks or
actors wait for resources (``upscalingMode``) and removes a worker once it has been idle, with no
task, actor or object it owns, for ``idleTimeoutSeconds``, never going below a group's
``minReplicas``.

The worker image has no ``wget``, which KubeRay's default probes call, so every Ray container here
sets its own HTTP probes (raylet health on the dashboard agent, GCS health on the head), and KubeRay
keeps probes a pod template already has.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.aws import RAY_WORKERS_SERVICE_ACCOUNT
from infra.components.operators import base
from infra.components.operators.platform_env import (
    ComputePlatform,
    client_labels,
    compute_placement,
    env,
    worker_identity,
)
from infra.config import RaySettings, RayWorkerGroup
from infra.images import ImageRef
from infra.scope import Scope

CLUSTER = "ray"
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
AGENT_PORT = 52365
CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
# Pods with this label (notebooks) may open the head's client and dashboard/job ports.
CLIENT_LABEL = {"qframe.io/ray-client": "true"}
# grpcio (1.85 in the image) installs fork handlers by default. The head's client proxier forks a
# server process per Ray client while its own gRPC threads are busy; the handlers are then skipped
# and the child dies before it execs ("Starting Ray client server failed", epoll_wait EBADF), and the
# client's sweep fell back to sequential. On the real node 3 of 30 concurrent connects failed with
# the handlers and 0 of 105 without. Ray processes fork only to exec, which needs no handlers.
GRPC_FORK_ENV = {"name": "GRPC_ENABLE_FORK_SUPPORT", "value": "0"}


def head_service(namespace: str, cluster: str = CLUSTER) -> str:
    """KubeRay names the head Service ``<cluster>-head-svc``."""
    return f"{cluster}-head-svc.{namespace}.svc"


def client_address(namespace: str) -> str:
    return f"ray://{head_service(namespace)}:{CLIENT_PORT}"


def dashboard_url(namespace: str) -> str:
    """Also the job-submission address (``JobSubmissionClient``, ``ray job submit --address``)."""
    return f"http://{head_service(namespace)}:{DASHBOARD_PORT}"


def ray_version() -> str:
    """The ray of the root uv.lock, which the worker image pins too (images/worker)."""
    return importlib.metadata.version("ray")


def _container(name: str, image: ImageRef, resources: dict[str, Any], platform: ComputePlatform) -> dict[str, Any]:
    _, mount = base.tmp_volume("2Gi")
    return {
        "name": name,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "env": [*env(platform), GRPC_FORK_ENV],
        "resources": resources,
        "securityContext": base.container_security_context(),
        "volumeMounts": [mount],
    }


def _template(labels: dict[str, str], container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    volume, _ = base.tmp_volume("2Gi")
    return {
        "metadata": {"labels": labels, **({"annotations": spec.pop("annotations")} if "annotations" in spec else {})},
        "spec": {
            "securityContext": base.pod_security_context(),
            "containers": [container],
            "volumes": [volume],
            **spec,
        },
    }


# A worker's `ray start` needs the head's GCS; until it answers, wait with a plain TCP probe (no
# `ray` import: that alone took seconds of CPU under KubeRay's 200m init container).
WAIT_FOR_GCS = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
started = time.monotonic()
while True:
    try:
        socket.create_connection((host, port), timeout=2).close()
        print(f"GCS at {host}:{port} answered after {time.monotonic() - started:.0f}s")
        break
    except OSError as exc:
        print(f"waiting for the GCS at {host}:{port}: {exc}", flush=True)
        time.sleep(2)
"""
WAIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}


def wait_for_gcs(image: ImageRef, namespace: str) -> dict[str, Any]:
    """The worker pods' init container (KubeRay's own is switched off, see operators/kuberay.py)."""
    return {
        "name": "wait-for-gcs",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "command": ["python3", "-c", WAIT_FOR_GCS, head_service(namespace), str(GCS_PORT)],
        "resources": WAIT_RESOURCES,
        "securityContext": base.container_security_context(),
    }


def _worker_group(group: RayWorkerGroup, scope: Scope, image: ImageRef, platform: ComputePlatform) -> dict[str, Any]:
    gpu = group.gpu
    container = _container(
        "ray-worker",
        image,
        base.resources(group.resources, {"nvidia.com/gpu": str(gpu.count)} if gpu else None),
        platform,
    )
    container["readinessProbe"] = base.http_probe("/api/local_raylet_healthz", AGENT_PORT, initial_delay=10, period=5)
    container["livenessProbe"] = base.http_probe("/api/local_raylet_healthz", AGENT_PORT, initial_delay=30, period=10)
    labels = {
        **scope.object_labels("ray", component="worker"),
        **client_labels(platform),
        "qframe.io/ray-group": group.name,
    }
    extra: dict[str, Any] = {
        "initContainers": [wait_for_gcs(image, scope.namespace)],
        "automountServiceAccountToken": False,
        **worker_identity(platform, RAY_WORKERS_SERVICE_ACCOUNT),
    }
    if gpu is None:
        extra.update(compute_placement(platform))
    else:
        extra["nodeSelector"] = dict(gpu.node_selector)
        extra["tolerations"] = [{"key": gpu.toleration_key, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "groupName": group.name,
        # No "replicas": the in-tree autoscaler owns it (KubeRay clamps the unset value to
        # minReplicas). Setting it made the next `pulumi up` fail with a server-side-apply field
        # conflict against the autoscaler's field manager on the real node.
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": {},
        "template": _template(labels, container, **extra),
    }


def build_cluster(scope: Scope, settings: RaySettings, image: ImageRef, platform: ComputePlatform) -> dict[str, Any]:
    head = _container("ray-head", image, base.resources(settings.head_resources), platform)
    head["ports"] = [
        {"name": "gcs-server", "containerPort": GCS_PORT, "protocol": "TCP"},
        {"name": "dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        {"name": "client", "containerPort": CLIENT_PORT, "protocol": "TCP"},
    ]
    head["readinessProbe"] = base.http_probe("/api/gcs_healthz", DASHBOARD_PORT, initial_delay=10, period=5)
    head["livenessProbe"] = base.http_probe("/api/gcs_healthz", DASHBOARD_PORT, initial_delay=30, period=10)
    head_labels = {**scope.object_labels("ray", component="head"), **client_labels(platform)}
    _, tmp_mount = base.tmp_volume()
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": CLUSTER,
            "namespace": scope.namespace,
            "labels": scope.object_labels("ray", component="cluster"),
            "annotations": dict(base.STACK_WINS_ANNOTATIONS),
        },
        "spec": {
            "rayVersion": ray_version(),
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "upscalingMode": settings.upscaling_mode,
                "idleTimeoutSeconds": settings.idle_timeout_seconds,
                "imagePullPolicy": image.pull_policy,
                "resources": base.resources(settings.autoscaler_resources),
                "securityContext": base.container_security_context(),
                # HOME is /tmp in the image; the sidecar shares the head's emptyDir.
                "volumeMounts": [tmp_mount],
            },
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                # Tasks run on workers only, so load always shows up as autoscaling demand.
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},  # noqa: S104
                "template": _template(
                    head_labels,
                    head,
                    # The autoscaler sidecar reads and patches its RayCluster with the token of the
                    # ServiceAccount KubeRay creates for it.
                    automountServiceAccountToken=True,
                    annotations={base.TOKEN_NEED_ANNOTATION: "Ray autoscaler sidecar scales its RayCluster"},
                ),
            },
            "workerGroupSpecs": [_worker_group(g, scope, image, platform) for g in settings.worker_groups],
        },
    }


def _pods_of_any_ray_cluster() -> dict[str, Any]:
    return {"podSelector": {"matchExpressions": [{"key": CLUSTER_LABEL, "operator": "Exists"}]}}


def build_network_policies(scope: Scope) -> list[dict[str, Any]]:
    """Ray nodes reach each other on any port (GCS, raylets, object transfer, workers' ports); clients
    reach the head's client and dashboard ports; the head's autoscaler reaches the API server."""
    labels = scope.object_labels("ray", component="network-policy")
    clients = {"podSelector": {"matchLabels": dict(CLIENT_LABEL)}}
    heads = {"podSelector": {"matchLabels": {NODE_TYPE_LABEL: "head"}}}
    client_ports = base.ports(CLIENT_PORT, DASHBOARD_PORT)

    def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": scope.namespace, "labels": labels},
            "spec": spec,
        }

    return [
        policy(
            "ray-clusters",
            {
                "podSelector": _pods_of_any_ray_cluster()["podSelector"],
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [_pods_of_any_ray_cluster()]}],
                "egress": [{"to": [_pods_of_any_ray_cluster()]}],
            },
        ),
        policy(
            "ray-heads",
            {
                "podSelector": heads["podSelector"],
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [clients], "ports": client_ports}],
                "egress": [base.api_server_egress()],
            },
        ),
        policy(
            "ray-clients",
            {
                "podSelector": clients["podSelector"],
                "policyTypes": ["Egress"],
                "egress": [{"to": [heads], "ports": client_ports}],
            },
        ),
    ]


@dataclass
class RayClusterArgs:
    scope: Scope
    settings: RaySettings
    image: ImageRef
    platform: ComputePlatform
    depends_on: list[pulumi.Resource]


class RayCluster(pulumi.ComponentResource):
    client_address: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: RayClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:compute:RayCluster", name, None, opts)
        scope = args.scope
        for policy in build_network_policies(scope):
            base.register(f"{name}-{policy['metadata']['name']}", policy, pulumi.ResourceOptions(parent=self))
        base.register(
            f"{name}-cluster",
            build_cluster(scope, args.settings, args.image, args.platform),
            pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.client_address = pulumi.Output.from_input(client_address(scope.namespace))
        self.dashboard_url = pulumi.Output.from_input(dashboard_url(scope.namespace))
        self.register_outputs({"client_address": self.client_address, "dashboard_url": self.dashboard_url})
