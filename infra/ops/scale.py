"""Autoscaler bounds on the live custom resources, and the stack keys that make them stick (pure).

Dask: ``DaskAutoscaler`` (kubernetes.dask.org/v1) ``spec.minimum``/``spec.maximum``, set in the stack
by ``dask.minWorkers``/``dask.maxWorkers``. Ray: each ``RayCluster`` (ray.io/v1) worker group's
``minReplicas``/``maxReplicas``, set by ``ray.workerGroups[i].minReplicas``/``maxReplicas``. A live
patch alone is undone by the next ``pulumi up`` that touches the CR, hence the config lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.ops.errors import OpsError

JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class ScalePlan:
    resource: str
    """``daskautoscalers`` or ``rayclusters``."""
    name: str
    patch: Any
    """A merge patch (dict) for Dask, a JSON patch (list) for Ray's worker-group list."""
    content_type: str
    before: str
    after: str
    config_lines: tuple[str, ...]


def check_bounds(minimum: int | None, maximum: int | None) -> None:
    if minimum is None and maximum is None:
        raise OpsError("nothing to change", "pass --min N, --max M or both")
    if minimum is not None and minimum < 0:
        raise OpsError(f"--min {minimum} is negative", "use 0 or more")
    if maximum is not None and maximum < 1:
        raise OpsError(f"--max {maximum} is below 1", "use 1 or more")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise OpsError(f"--min {minimum} is above --max {maximum}", "make --min at most --max")


def _config_set(path: str, value: int) -> str:
    return f"pulumi config set --path '{path}' {value}"


def plan_dask(autoscalers: Sequence[Mapping[str, Any]], minimum: int | None, maximum: int | None) -> list[ScalePlan]:
    plans = []
    for cr in autoscalers:
        spec = cr.get("spec") or {}
        lo = int(spec.get("minimum", 0)) if minimum is None else minimum
        hi = int(spec.get("maximum", 0)) if maximum is None else maximum
        if lo > hi:
            raise OpsError(
                f"DaskAutoscaler/{cr['metadata']['name']} would get minimum {lo} above maximum {hi}",
                "pass both --min and --max",
            )
        lines = []
        if minimum is not None:
            lines.append(_config_set("dask.minWorkers", minimum))
        if maximum is not None:
            lines.append(_config_set("dask.maxWorkers", maximum))
        plans.append(
            ScalePlan(
                resource="daskautoscalers",
                name=cr["metadata"]["name"],
                patch={"spec": {"minimum": lo, "maximum": hi}},
                content_type="application/merge-patch+json",
                before=f"min {spec.get('minimum')} max {spec.get('maximum')}",
                after=f"min {lo} max {hi}",
                config_lines=tuple(lines),
            )
        )
    return plans


def plan_ray(
    clusters: Sequence[Mapping[str, Any]], minimum: int | None, maximum: int | None, group: str | None
) -> list[ScalePlan]:
    plans = []
    for cr in clusters:
        groups = (cr.get("spec") or {}).get("workerGroupSpecs") or []
        names = [str(g.get("groupName")) for g in groups]
        if group is not None and group not in names:
            raise OpsError(
                f"RayCluster/{cr['metadata']['name']} has no worker group {group!r}",
                f"use --group with one of: {', '.join(names)}",
            )
        ops: list[dict[str, Any]] = []
        before, after, lines = [], [], []
        for index, spec in enumerate(groups):
            if group is not None and spec.get("groupName") != group:
                continue
            lo = int(spec.get("minReplicas", 0)) if minimum is None else minimum
            hi = int(spec.get("maxReplicas", 0)) if maximum is None else maximum
            if lo > hi:
                raise OpsError(
                    f"worker group {spec.get('groupName')} would get minReplicas {lo} above maxReplicas {hi}",
                    "pass both --min and --max",
                )
            base = f"/spec/workerGroupSpecs/{index}"
            # The test op makes the patch fail rather than scale another group if the list changed meanwhile.
            ops.append({"op": "test", "path": f"{base}/groupName", "value": spec.get("groupName")})
            ops.append({"op": "replace", "path": f"{base}/minReplicas", "value": lo})
            ops.append({"op": "replace", "path": f"{base}/maxReplicas", "value": hi})
            replicas = spec.get("replicas")
            if replicas is not None and not lo <= int(replicas) <= hi:
                ops.append({"op": "replace", "path": f"{base}/replicas", "value": min(max(int(replicas), lo), hi)})
            before.append(f"{spec.get('groupName')}: min {spec.get('minReplicas')} max {spec.get('maxReplicas')}")
            after.append(f"{spec.get('groupName')}: min {lo} max {hi}")
            if minimum is not None:
                lines.append(_config_set(f"ray.workerGroups[{index}].minReplicas", minimum))
            if maximum is not None:
                lines.append(_config_set(f"ray.workerGroups[{index}].maxReplicas", maximum))
        plans.append(
            ScalePlan(
                resource="rayclusters",
                name=cr["metadata"]["name"],
                patch=ops,
                content_type=JSON_PATCH,
                before="; ".join(before),
                after="; ".join(after),
                config_lines=tuple(lines),
            )
        )
    return plans
