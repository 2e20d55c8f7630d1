"""The labels every object of the platform carries.

``app.kubernetes.io/*`` labels let kubectl, Helm and dashboards group objects by service and
release; the stack's own labels (team, cost-center) are added to every object as well.
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.config import PROJECT, StackConfig

MANAGED_BY = "pulumi"


def standard_labels(cfg: StackConfig, *, name: str, component: str | None = None) -> dict[str, str]:
    """Labels for one object of the service ``name`` (``minio``, ``kafka``, ...)."""
    labels: dict[str, str] = dict(cfg.labels)
    labels.update(
        {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": f"{name}-{cfg.namespace}",
            "app.kubernetes.io/part-of": PROJECT,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        }
    )
    if component is not None:
        labels["app.kubernetes.io/component"] = component
    return labels


def selector_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The immutable subset used in selectors: changing it would orphan running pods."""
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance") if k in labels}
