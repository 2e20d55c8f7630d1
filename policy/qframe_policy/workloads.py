"""Kubernetes workloads: every container (init containers included) runs as non-root, drops all
capabilities, has a read-only root filesystem and sets cpu and memory requests and limits.

Judged wherever the program registers a pod spec: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob, and the pod templates of our operators' custom resources (DaskCluster scheduler and
worker, DaskWorkerGroup, RayCluster head and worker groups). Helm releases reach the engine as one
Release resource without their rendered objects; the charts tier holds our charts to the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .model import Context, Resource, as_list, as_map, dig

# Type token -> how to find its pod specs: (label suffix, path) pairs; "*" expands a list.
POD_SPEC_PATHS: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "kubernetes:core/v1:Pod": (("", ("spec",)),),
    "kubernetes:apps/v1:Deployment": (("", ("spec", "template", "spec")),),
    "kubernetes:apps/v1:StatefulSet": (("", ("spec", "template", "spec")),),
    "kubernetes:apps/v1:DaemonSet": (("", ("spec", "template", "spec")),),
    "kubernetes:apps/v1:ReplicaSet": (("", ("spec", "template", "spec")),),
    "kubernetes:batch/v1:Job": (("", ("spec", "template", "spec")),),
    "kubernetes:batch/v1:CronJob": (("", ("spec", "jobTemplate", "spec", "template", "spec")),),
    "kubernetes:kubernetes.dask.org/v1:DaskCluster": (
        ("scheduler", ("spec", "scheduler", "spec")),
        ("worker", ("spec", "worker", "spec")),
    ),
    "kubernetes:kubernetes.dask.org/v1:DaskWorkerGroup": (("worker", ("spec", "worker", "spec")),),
    "kubernetes:ray.io/v1:RayCluster": (
        ("head", ("spec", "headGroupSpec", "template", "spec")),
        ("group", ("spec", "workerGroupSpecs", "*", "template", "spec")),
    ),
}
TYPES = frozenset(POD_SPEC_PATHS)


def _resolve(value: Any, path: tuple[str, ...]) -> Iterator[tuple[int | None, Any]]:
    if "*" not in path:
        yield None, dig(value, *path)
        return
    star = path.index("*")
    for index, item in enumerate(as_list(dig(value, *path[:star]))):
        for _, found in _resolve(item, path[star + 1 :]):
            yield index, found


def pod_specs(resource: Resource) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, pod spec) for each pod the resource makes Kubernetes run."""
    kind = str(resource.props.get("kind") or resource.type.rsplit(":", 1)[-1])
    name = dig(resource.props, "metadata", "name") or resource.name
    for part, path in POD_SPEC_PATHS.get(resource.type, ()):
        for index, spec in _resolve(resource.props, path):
            if part == "group":
                group = as_map(as_list(dig(resource.props, "spec", "workerGroupSpecs"))[index or 0]).get("groupName")
                part_label = f" worker group {group!r}"
            else:
                part_label = f" {part}" if part else ""
            yield f"{kind} '{name}'{part_label}", as_map(spec)


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field, noun in (("initContainers", "init container"), ("containers", "container")):
        for container in as_list(spec.get(field)):
            yield f"{noun} {as_map(container).get('name', '<no name>')!r}", as_map(container)


ContainerCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


def _each_container(resource: Resource, judge: ContainerCheck) -> list[str]:
    found: list[str] = []
    for where, spec in pod_specs(resource):
        pod_context = as_map(spec.get("securityContext"))
        for noun, container in containers(spec):
            found.extend(f"{where} {noun}: {text}" for text in judge(container, pod_context))
    return found


def _effective(container: Mapping[str, Any], pod_context: Mapping[str, Any], field: str) -> Any:
    """The container's securityContext wins over the pod's (Kubernetes semantics)."""
    own = as_map(container.get("securityContext"))
    return own[field] if own.get(field) is not None else pod_context.get(field)


def _non_root(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    problems = []
    if _effective(container, pod_context, "runAsNonRoot") is not True:
        problems.append("securityContext.runAsNonRoot is not true; set runAsNonRoot: true (pod or container)")
    if _effective(container, pod_context, "runAsUser") == 0:
        problems.append("securityContext.runAsUser is 0 (root); run as a non-zero UID")
    return problems


def check_non_root(resource: Resource, context: Context) -> list[str]:
    return _each_container(resource, _non_root)


def _capabilities(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    caps = as_map(dig(container, "securityContext", "capabilities"))
    problems = []
    if "ALL" not in [str(c) for c in as_list(caps.get("drop"))]:
        problems.append("securityContext.capabilities.drop does not contain ALL; set capabilities.drop: [ALL]")
    added = [str(c) for c in as_list(caps.get("add"))]
    if added:
        problems.append(f"securityContext.capabilities.add is {added}; add no capabilities back")
    return problems


def check_capabilities_dropped(resource: Resource, context: Context) -> list[str]:
    return _each_container(resource, _capabilities)


def _read_only_root(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    if dig(container, "securityContext", "readOnlyRootFilesystem") is True:
        return []
    return ["securityContext.readOnlyRootFilesystem is not true; set it and mount an emptyDir where the process writes"]


def check_read_only_root_filesystem(resource: Resource, context: Context) -> list[str]:
    return _each_container(resource, _read_only_root)


def _resources(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    missing = [
        f"{section}.{name}"
        for section in ("requests", "limits")
        for name in ("cpu", "memory")
        if dig(container, "resources", section, name) in (None, "")
    ]
    if not missing:
        return []
    return [f"resources {', '.join(missing)} missing; set cpu and memory requests and limits"]


def check_resources(resource: Resource, context: Context) -> list[str]:
    return _each_container(resource, _resources)
