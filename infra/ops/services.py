"""Which platform services run, and how healthy they are, from the API's JSON (pure).

A service is found by what its chart or operator labels it with, never by guessing from names:
helm releases by ``app.kubernetes.io/instance``, Dask clusters by ``dask.org/cluster-name``, Ray
clusters by ``ray.io/cluster``. A service of the catalogue with nothing in the cluster is "not
deployed" (a stack may leave it out, or it has not landed yet); that is not a failure. Workloads
that no catalogue entry claims still get a row of their own, so nothing running goes unseen.

Healthy means every workload wants at least one replica and has as many ready as it wants; a
platform service scaled to zero is down, whatever its (empty) ready count says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

INSTANCE = "app.kubernetes.io/instance"
NAME = "app.kubernetes.io/name"
DASK_CLUSTER = "dask.org/cluster-name"
RAY_CLUSTER = "ray.io/cluster"

READY = "ready"
NOT_DEPLOYED = "not deployed"


@dataclass(frozen=True)
class ServiceSpec:
    """A platform service: the helm releases (or operator names) whose objects make it up."""

    name: str
    releases: tuple[str, ...] = ()
    custom_resource: str = ""
    """``daskclusters`` / ``rayclusters``: the service is the operator-managed clusters of that kind."""
    operator: bool = False


CATALOGUE: tuple[ServiceSpec, ...] = (
    ServiceSpec("object-store", releases=("minio",)),
    ServiceSpec("postgres", releases=("postgres",)),
    ServiceSpec("kafka", releases=("kafka",)),
    ServiceSpec("mlflow", releases=("mlflow",)),
    ServiceSpec("jupyterhub", releases=("jupyterhub",)),
    ServiceSpec("dask-operator", releases=("dask-operator",), operator=True),
    ServiceSpec("dask", custom_resource="daskclusters"),
    ServiceSpec("ray-operator", releases=("kuberay-operator",), operator=True),
    ServiceSpec("ray", custom_resource="rayclusters"),
)


@dataclass(frozen=True)
class Snapshot:
    """The namespace as listed once: each kind's items (None: the API does not serve the kind)."""

    namespace: str
    deployments: Sequence[Mapping[str, Any]] = ()
    statefulsets: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    services: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    daskclusters: Sequence[Mapping[str, Any]] | None = None
    rayclusters: Sequence[Mapping[str, Any]] | None = None


@dataclass
class ServiceStatus:
    service: str
    state: str
    desired: int = 0
    ready: int = 0
    restarts: int = 0
    workloads: list[str] = field(default_factory=list)
    last_warning: str = ""
    endpoint: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.state in (READY, NOT_DEPLOYED)

    def as_row(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "ready": f"{self.ready}/{self.desired}" if self.state != NOT_DEPLOYED else "-",
            "desired": self.desired,
            "ready_replicas": self.ready,
            "restarts": self.restarts,
            "workloads": self.workloads,
            "last_warning": self.last_warning,
            "endpoint": self.endpoint,
            "problems": self.problems,
            "healthy": self.healthy,
        }


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _kind_name(kind: str, obj: Mapping[str, Any]) -> str:
    return f"{kind}/{_name(obj)}"


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _restarts(pods: Sequence[Mapping[str, Any]]) -> int:
    return sum(
        int(c.get("restartCount", 0))
        for pod in pods
        for c in [*((pod.get("status") or {}).get("containerStatuses") or [])]
    )


def _owned_by(pod: Mapping[str, Any], workload_names: set[str]) -> bool:
    """Pods of a Deployment are owned by its ReplicaSets (``<deployment>-<hash>``), of a StatefulSet by it."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        owner = str(ref.get("name", ""))
        if owner in workload_names:
            return True
        if ref.get("kind") == "ReplicaSet" and owner.rsplit("-", 1)[0] in workload_names:
            return True
    return False


def _when(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("series") or {}).get("lastObservedTime")
        or meta.get("creationTimestamp")
        or ""
    )


def _age(stamp: str, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def last_warning(events: Sequence[Mapping[str, Any]], names: set[str], now: datetime) -> str:
    """The newest Warning event about one of ``names``: ``<age> ago <Reason>: <message>``."""
    mine = [e for e in events if e.get("type") == "Warning" and (e.get("involvedObject") or {}).get("name") in names]
    if not mine:
        return ""
    newest = max(mine, key=_when)
    message = " ".join(str(newest.get("message", "")).split())
    if len(message) > 100:
        message = message[:97] + "..."
    return f"{_age(_when(newest), now)} ago {newest.get('reason', '')}: {message}"


def endpoint(services: Sequence[Mapping[str, Any]], namespace: str) -> str:
    """``<service>.<ns>.svc:<port>`` of the first non-headless Service (headless ones only address pods)."""
    ordered = sorted(services, key=lambda s: ((s.get("spec") or {}).get("clusterIP") == "None", _name(s)))
    for svc in ordered:
        ports = (svc.get("spec") or {}).get("ports") or []
        if ports:
            return f"{_name(svc)}.{namespace}.svc:{ports[0].get('port')}"
    return ""


def _terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _workload_counts(
    kind: str, obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> tuple[int, int, list[str]]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    if kind == "StatefulSet":
        # A StatefulSet pod being deleted still counts as ready until its containers stop, and its
        # replacement (same name) starts only after that: right after a scale to 0 and back, the
        # count said 1/1 while the broker was about to go away.
        going = [p for p in pods if _terminating(p) and _pod_ready(p) and _owned_by(p, {_name(obj)})]
        ready = max(0, ready - len(going))
    problems = []
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if desired == 0:
        problems.append(f"{_kind_name(kind, obj)} is scaled to 0")
    elif generation is not None and observed is not None and int(observed) < int(generation):
        # As kubectl rollout status: counts from before the last change say nothing about it.
        problems.append(f"{_kind_name(kind, obj)} is rolling out (generation {generation}, status of {observed})")
    elif ready < desired:
        problems.append(f"{_kind_name(kind, obj)} has {ready}/{desired} ready")
    return desired, ready, problems


def claims(spec: ServiceSpec, obj: Mapping[str, Any]) -> bool:
    """Chart objects carry the release as instance; operators the program deploys carry their name."""
    labels = _labels(obj)
    key = NAME if spec.operator else INSTANCE
    return labels.get(key) in spec.releases


def _release_status(spec: ServiceSpec, snap: Snapshot, now: datetime) -> ServiceStatus | None:
    def claimed(obj: Mapping[str, Any]) -> bool:
        return claims(spec, obj)

    workloads = [("Deployment", d) for d in snap.deployments if claimed(d)]
    workloads += [("StatefulSet", s) for s in snap.statefulsets if claimed(s)]
    if not workloads:
        return None
    return _from_workloads(spec.name, workloads, [s for s in snap.services if claimed(s)], snap, now)


def _from_workloads(
    name: str,
    workloads: list[tuple[str, Mapping[str, Any]]],
    services: Sequence[Mapping[str, Any]],
    snap: Snapshot,
    now: datetime,
) -> ServiceStatus:
    status = ServiceStatus(service=name, state=READY)
    names = {_name(w) for _, w in workloads}
    pods = [p for p in snap.pods if _owned_by(p, names)]
    for kind, obj in workloads:
        desired, ready, problems = _workload_counts(kind, obj, pods)
        status.desired += desired
        status.ready += ready
        status.problems += problems
        status.workloads.append(_kind_name(kind, obj))
    status.restarts = _restarts(pods)
    status.last_warning = last_warning(snap.events, names | {_name(p) for p in pods}, now)
    status.endpoint = endpoint(services, snap.namespace)
    if status.problems:
        status.state = "scaled to 0" if all("scaled to 0" in p for p in status.problems) else "degraded"
    return status


def _custom_resource_status(spec: ServiceSpec, snap: Snapshot, now: datetime) -> ServiceStatus | None:
    items = getattr(snap, spec.custom_resource)
    if not items:
        return None
    label = DASK_CLUSTER if spec.custom_resource == "daskclusters" else RAY_CLUSTER
    status = ServiceStatus(service=spec.name, state=READY)
    for cr in items:
        cluster = _name(cr)
        pods = [p for p in snap.pods if _labels(p).get(label) == cluster]
        ready_pods = [p for p in pods if _pod_ready(p)]
        cr_status = cr.get("status") or {}
        if spec.custom_resource == "rayclusters":
            desired = 1 + int(cr_status.get("desiredWorkerReplicas", 0) or 0)
            phase = str(cr_status.get("state", ""))
            ok = phase == "ready"
            head = [p for p in pods if _labels(p).get("ray.io/node-type") == "head"]
        else:
            # The operator runs the scheduler and each worker as a Deployment labelled with the cluster.
            owned = [d for d in snap.deployments if _labels(d).get(DASK_CLUSTER) == cluster]
            desired = sum(int((d.get("spec") or {}).get("replicas", 1)) for d in owned) or 1
            phase = str(cr_status.get("phase", ""))
            # dask-kubernetes races itself: the scheduler Service handler sets "Running", then the
            # create-components handler's own patch lands "Pending" after it, and a ClusterIP Service's
            # status never changes again (seen on the real node, operator 2026.3.0). So a Pending
            # cluster whose scheduler and workers are all ready is healthy; the pods decide.
            ok = phase == "Running" or (phase == "Pending" and bool(owned) and len(ready_pods) >= desired)
            head = [p for p in pods if _labels(p).get("dask.org/component") == "scheduler"]
        head_ready = any(_pod_ready(p) for p in head)
        status.desired += desired
        status.ready += len(ready_pods)
        status.restarts += _restarts(pods)
        status.workloads.append(f"{cr.get('kind', spec.custom_resource)}/{cluster} ({phase or 'no status'})")
        if not ok:
            status.problems.append(f"{cluster} is {phase or 'not reconciled yet'}")
        if not head_ready:
            status.problems.append(f"{cluster}: {'head' if label == RAY_CLUSTER else 'scheduler'} pod not ready")
        warning = last_warning(snap.events, {cluster} | {_name(p) for p in pods}, now)
        status.last_warning = status.last_warning or warning
        services = [s for s in snap.services if _labels(s).get(label) == cluster]
        status.endpoint = status.endpoint or endpoint(services, snap.namespace)
    if status.problems:
        status.state = "degraded"
    return status


def service_statuses(snap: Snapshot, now: datetime | None = None) -> list[ServiceStatus]:
    """One status per catalogue service (``not deployed`` when absent), then unclaimed workloads."""
    now = now or datetime.now(UTC)
    rows: list[ServiceStatus] = []
    for spec in CATALOGUE:
        found = _custom_resource_status(spec, snap, now) if spec.custom_resource else _release_status(spec, snap, now)
        rows.append(found or ServiceStatus(service=spec.name, state=NOT_DEPLOYED))
    others: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for kind, items in (("Deployment", snap.deployments), ("StatefulSet", snap.statefulsets)):
        for obj in items:
            labels = _labels(obj)
            if any(claims(spec, obj) for spec in CATALOGUE if spec.releases):
                continue
            if DASK_CLUSTER in labels or RAY_CLUSTER in labels:
                continue
            group = labels.get(INSTANCE) or labels.get(NAME) or _name(obj)
            others.setdefault(group, []).append((kind, obj))
    for group, workloads in sorted(others.items()):
        services = [s for s in snap.services if _labels(s).get(INSTANCE) == group]
        rows.append(_from_workloads(group, workloads, services, snap, now))
    return rows
