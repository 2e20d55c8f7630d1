"""The one way components hand credentials to workloads: an Opaque Secret built from secret data."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s


def credentials_secret(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    data: pulumi.Output[dict[str, str]],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """``data`` must derive from secret outputs (e.g. ``GeneratedPassword.value``): an apply on a
    secret stays secret, so the whole ``stringData`` input is a secret and never shows in plain state."""
    return k8s.core.v1.Secret(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels)),
        type="Opaque",
        string_data=data,
        opts=opts,
    )
