"""What every component needs from the stack besides its own section: where, which labels, protect.

Components take a ``Scope`` instead of the whole ``StackConfig`` so their inputs can be read from
their ``*Args``. ``app.kubernetes.io/*`` labels let kubectl, Helm and dashboards group objects by
service and release; the stack's own labels (team, cost-center) go on every object as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.config import PROJECT, StackConfig

MANAGED_BY = "pulumi"
# Lets an operator find every object of one stack across releases with a single selector.
STACK_NAMESPACE_LABEL = "qframe.io/stack-namespace"


@dataclass(frozen=True)
class Scope:
    namespace: str
    """The stack's namespace name (labels, DNS names); resources take the Tenancy's output instead."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """The stack's own labels."""
    protect: bool = False
    """``protectStateful``: stateful resources refuse deletion."""

    @classmethod
    def of(cls, cfg: StackConfig) -> Scope:
        return cls(namespace=cfg.namespace, labels=dict(cfg.labels), protect=cfg.protect_stateful)

    def object_labels(self, name: str, component: str | None = None) -> dict[str, str]:
        """Labels for an object the program creates itself, of the service ``name`` (``minio``, ...)."""
        labels = dict(self.labels)
        labels.update(
            {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/instance": f"{name}-{self.namespace}",
                "app.kubernetes.io/part-of": PROJECT,
                "app.kubernetes.io/managed-by": MANAGED_BY,
            }
        )
        if component is not None:
            labels["app.kubernetes.io/component"] = component
        return labels

    def chart_labels(self) -> dict[str, str]:
        """``commonLabels`` for every chart: the chart adds its own ``app.kubernetes.io/*`` labels."""
        return {**self.labels, STACK_NAMESPACE_LABEL: self.namespace}
