"""The platform namespace and its baseline: Pod Security admission, default-deny networking, limits.

Every later component deploys into this namespace, so its guard rails apply to all of them. The
baseline objects come from charts/tenant-baseline (the same chart a platform engineer installs with
helm into an extra team namespace), so there is one definition of "a locked-down namespace".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.charts import local_chart_release
from infra.scope import Scope

# Pods that need more than the "restricted" profile allows are rejected at admission time,
# which turns a forgotten securityContext into an immediate, visible error.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
BASELINE_RELEASE = "tenant-baseline"


def build_namespace(scope: Scope) -> dict[str, Any]:
    labels = scope.object_labels("tenancy", component="namespace")
    labels.update(POD_SECURITY_LABELS)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": scope.namespace, "labels": labels}}


def build_baseline_values(scope: Scope) -> dict[str, Any]:
    """Values for charts/tenant-baseline in the platform namespace."""
    return {
        "commonLabels": scope.chart_labels(),
        "networkPolicy": {
            "dns": {"enabled": True},
            # No blanket allow between the platform's own pods: each service admits only its
            # named consumers with a policy of its own.
            "sameNamespace": {"enabled": False},
        },
        "limitRange": {"enabled": True},
        "resourceQuota": {"enabled": False},
    }


@dataclass
class TenancyArgs:
    scope: Scope


class Tenancy(pulumi.ComponentResource):
    namespace_name: pulumi.Output[str]

    def __init__(self, name: str, args: TenancyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:platform:Tenancy", name, None, opts)
        manifest = build_namespace(args.scope)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=manifest["metadata"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace_name = namespace.metadata.apply(lambda m: str(m["name"]))
        baseline = local_chart_release(
            f"{name}-baseline",
            chart="tenant-baseline",
            release=BASELINE_RELEASE,
            namespace=self.namespace_name,
            values=build_baseline_values(args.scope),
            description="namespace baseline",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.baseline_release = baseline.name
        self.register_outputs({"namespace_name": self.namespace_name, "baseline_release": self.baseline_release})
