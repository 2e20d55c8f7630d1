"""The platform namespace and its baseline: Pod Security admission, default-deny networking, quotas.

Every later component deploys into this namespace, so its guard rails apply to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig
from infra.labels import standard_labels

# Pods that need more than the "restricted" profile allows are rejected at admission time,
# which turns a forgotten securityContext into an immediate, visible error.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def build_namespace(cfg: StackConfig) -> dict[str, Any]:
    labels = standard_labels(cfg, name="tenancy", component="namespace")
    labels.update(POD_SECURITY_LABELS)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cfg.namespace, "labels": labels}}


@dataclass
class TenancyArgs:
    config: StackConfig


class Tenancy(pulumi.ComponentResource):
    namespace_name: pulumi.Output[str]

    def __init__(self, name: str, args: TenancyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("qframe:platform:Tenancy", name, None, opts)
        manifest = build_namespace(args.config)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=manifest["metadata"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace_name = namespace.metadata.apply(lambda m: str(m["name"]))
        self.register_outputs({"namespace_name": self.namespace_name})
