"""What the operators and the clusters they reconcile share: security contexts, probes, the
API-server egress rule, and registering plain manifests as typed Pulumi resources.

Builders return plain Kubernetes manifests (dicts) so tests assert on exactly what the cluster
receives; ``register`` turns one into the typed resource of its kind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import Resources

# The images' fixed non-root UID (images/worker, images/dask-operator, images/kuberay-operator).
IMAGE_UID = 10001
# The API server is not a pod: NetworkPolicies can only open it by port (the Service's 443 and the
# address it is translated to, 6443 on the dev node and most distributions).
API_SERVER_PORTS = (443, 6443)
# A pod that talks to the Kubernetes API says why (tests/harness/security.py TOKEN_NEED_ANNOTATION).
TOKEN_NEED_ANNOTATION = "qframe.io/needs-service-account-token"  # noqa: S105 - an annotation key
# On objects that `qframe-ops scale` patches live: that patch makes its client a field manager,
# and KubeRay's worker-group list is atomic, so without this the next `pulumi up` that touches the
# list fails with a server-side-apply conflict instead of setting the stack's values back.
STACK_WINS_ANNOTATIONS = {"pulumi.com/patchForce": "true"}


def pod_security_context(uid: int = IMAGE_UID) -> dict[str, Any]:
    """``uid``: the image's fixed non-root user (images/<name>/image.toml); ours default to 10001."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int = IMAGE_UID) -> dict[str, Any]:
    """Restricted: the namespace enforces Pod Security 'restricted', and root fs is read-only."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(settings: Resources, extra_limits: Mapping[str, str] | None = None) -> dict[str, Any]:
    out = settings.model_dump(mode="json")
    if extra_limits:
        # Extended resources (GPUs) must have requests equal to limits; the API defaults them.
        out["limits"].update(extra_limits)
        out["requests"].update(extra_limits)
    return out


def http_probe(
    path: str, port: int | str, *, initial_delay: int = 5, period: int = 10, failures: int = 6
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def tmp_volume(size: str = "1Gi") -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount): the images keep HOME, work and spill files in /tmp on a read-only root fs."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": size}}, {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def api_server_egress() -> dict[str, Any]:
    return {"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]}


def ports(*numbers: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def register(name: str, obj: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The typed Pulumi resource for one manifest (the kinds these components create)."""
    kind, meta = obj["kind"], obj["metadata"]
    typed: dict[str, Any] = {
        "ServiceAccount": lambda: k8s.core.v1.ServiceAccount(
            name, metadata=meta, automount_service_account_token=obj.get("automountServiceAccountToken"), opts=opts
        ),
        "Role": lambda: k8s.rbac.v1.Role(name, metadata=meta, rules=obj["rules"], opts=opts),
        "ClusterRole": lambda: k8s.rbac.v1.ClusterRole(name, metadata=meta, rules=obj["rules"], opts=opts),
        "ClusterRoleBinding": lambda: k8s.rbac.v1.ClusterRoleBinding(
            name, metadata=meta, role_ref=obj["roleRef"], subjects=obj["subjects"], opts=opts
        ),
        "RoleBinding": lambda: k8s.rbac.v1.RoleBinding(
            name, metadata=meta, role_ref=obj["roleRef"], subjects=obj["subjects"], opts=opts
        ),
        "Deployment": lambda: k8s.apps.v1.Deployment(name, metadata=meta, spec=obj["spec"], opts=opts),
        "NetworkPolicy": lambda: k8s.networking.v1.NetworkPolicy(name, metadata=meta, spec=obj["spec"], opts=opts),
        "CustomResourceDefinition": lambda: k8s.apiextensions.v1.CustomResourceDefinition(
            name, metadata=meta, spec=obj["spec"], opts=opts
        ),
    }
    if kind in typed:
        resource: pulumi.CustomResource = typed[kind]()
        return resource
    # Custom resources of the operators (DaskCluster, DaskAutoscaler, RayCluster).
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=kind, metadata=meta, spec=obj["spec"], opts=opts
    )


def install_operator(
    component: pulumi.ComponentResource, name: str, crd_paths: Iterable[Path], objects: Sequence[Mapping[str, Any]]
) -> pulumi.Output[str]:
    """The CRD files, then the operator's objects under ``component``; returns its Deployment's name.

    The provider applies the extracted CRD files itself (server-side apply: the KubeRay CRDs are
    larger than a client-side apply annotation may be); the program never parses them.
    """
    crds = [
        k8s.yaml.v2.ConfigFile(
            f"{name}-crd-{path.stem}", file=os.path.relpath(path), opts=pulumi.ResourceOptions(parent=component)
        )
        for path in crd_paths
    ]
    child = pulumi.ResourceOptions(parent=component, depends_on=crds)
    created = [register(f"{name}-{obj['kind'].lower()}", obj, child) for obj in objects]
    deployment = next(r for r in created if isinstance(r, k8s.apps.v1.Deployment))
    return deployment.metadata.apply(lambda m: str(m["name"]))
