"""qframe-ops decisions as pure functions: drift, scale patches, health rules, doctor checks, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.ops import diff, doctor, scale
from infra.ops.cli import pulumi_warning
from infra.ops.errors import OpsError
from infra.ops.kube import RESOURCES
from infra.ops.services import Snapshot, service_statuses
from infra.ops.stack import ReleaseSpec, config_key, stack_file

pytestmark = pytest.mark.unit


def _deployment(replicas: int = 1, ready: int = 1, cpu: str = "500m") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mlflow", "labels": {"app.kubernetes.io/instance": "mlflow"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "server", "resources": {"requests": {"cpu": cpu}}}]}},
        },
        "status": {"readyReplicas": ready},
    }


def test_diff_ignores_server_defaults_and_equal_quantities() -> None:
    rendered = _deployment(cpu="0.5")
    live = _deployment(cpu="500m")
    live["metadata"]["uid"] = "x"
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    rendered["spec"]["template"]["metadata"] = {"annotations": {}}
    assert diff.object_changes(rendered, live) == []


def test_diff_reports_the_changed_field_with_both_values() -> None:
    changes = diff.object_changes(_deployment(replicas=1), _deployment(replicas=3))
    assert changes == [diff.Change("spec.replicas", 1, 3)]


def test_diff_never_compares_or_shows_secret_values() -> None:
    rendered = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "rendered"}}
    live = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "bGl2ZQ=="}}
    assert diff.object_changes(rendered, live) == []


def test_diff_release_skips_hooks_and_marks_missing_objects() -> None:
    hook = {"kind": "Job", "metadata": {"name": "init", "annotations": {"helm.sh/hook": "post-install"}}}
    gone = {"kind": "Service", "metadata": {"name": "gone"}}
    odd = {"kind": "Unheard", "metadata": {"name": "x"}}
    results = diff.diff_release("r", [hook, gone, odd], lambda kind, name: None, lambda kind: kind != "Unheard")
    assert [(r.ref, r.state) for r in results] == [("Service/gone", "missing"), ("Unheard/x", "not compared")]


def test_status_scaled_to_zero_is_unhealthy_even_with_nothing_to_be_ready() -> None:
    snap = Snapshot(namespace="qframe", deployments=[_deployment(replicas=0, ready=0)])
    (mlflow,) = [s for s in service_statuses(snap) if s.service == "mlflow"]
    assert (mlflow.state, mlflow.healthy, mlflow.problems) == (
        "scaled to 0",
        False,
        ["Deployment/mlflow is scaled to 0"],
    )


def test_status_degraded_when_fewer_ready_than_desired() -> None:
    snap = Snapshot(namespace="qframe", deployments=[_deployment(replicas=2, ready=1)])
    (mlflow,) = [s for s in service_statuses(snap) if s.service == "mlflow"]
    assert (mlflow.state, mlflow.problems) == ("degraded", ["Deployment/mlflow has 1/2 ready"])


def _kafka(ready: int, generation: int = 3, observed: int = 3) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "kafka", "labels": {"app.kubernetes.io/instance": "kafka"}, "generation": generation},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": ready, "observedGeneration": observed},
    }


def _kafka_pod(deleting: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "kafka-0", "ownerReferences": [{"kind": "StatefulSet", "name": "kafka"}]}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {
        "metadata": metadata,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.mark.parametrize(
    ("statefulset", "pods", "problems"),
    [
        (_kafka(ready=1), [_kafka_pod(deleting=False)], []),
        # Scaled back to 1 while the old broker is still stopping: its pod is ready but going away.
        (_kafka(ready=1), [_kafka_pod(deleting=True)], ["StatefulSet/kafka has 0/1 ready"]),
        (
            _kafka(ready=1, generation=4, observed=3),
            [_kafka_pod(deleting=False)],
            ["StatefulSet/kafka is rolling out (generation 4, status of 3)"],
        ),
    ],
    ids=["ready", "ready-pod-being-deleted", "status-older-than-spec"],
)
def test_status_does_not_trust_counts_that_lag_the_cluster(
    statefulset: dict[str, Any], pods: list[dict[str, Any]], problems: list[str]
) -> None:
    snap = Snapshot(namespace="qframe", statefulsets=[statefulset], pods=pods)
    (kafka,) = [s for s in service_statuses(snap) if s.service == "kafka"]
    assert kafka.problems == problems
    assert kafka.healthy is (problems == [])


def test_status_unclaimed_workloads_get_their_own_row() -> None:
    other = _deployment()
    other["metadata"] = {"name": "extra", "labels": {"app.kubernetes.io/instance": "team-tool"}}
    rows = {s.service: s for s in service_statuses(Snapshot(namespace="qframe", deployments=[other]))}
    assert rows["team-tool"].state == "ready"
    assert rows["kafka"].state == "not deployed"


def _raycluster() -> dict[str, Any]:
    return {
        "metadata": {"name": "qframe-ray"},
        "spec": {
            "workerGroupSpecs": [
                {"groupName": "cpu", "minReplicas": 1, "maxReplicas": 4, "replicas": 1},
                {"groupName": "gpu", "minReplicas": 0, "maxReplicas": 2, "replicas": 0},
            ]
        },
    }


def test_scale_ray_json_patch_guards_the_group_and_clamps_replicas() -> None:
    (plan,) = scale.plan_ray([_raycluster()], 2, 3, "cpu")
    assert plan.patch == [
        {"op": "test", "path": "/spec/workerGroupSpecs/0/groupName", "value": "cpu"},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/minReplicas", "value": 2},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/maxReplicas", "value": 3},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
    ]
    assert plan.config_lines == (
        "pulumi config set --path 'ray.workerGroups[0].minReplicas' 2",
        "pulumi config set --path 'ray.workerGroups[0].maxReplicas' 3",
    )


def test_scale_ray_unknown_group_names_the_groups() -> None:
    with pytest.raises(OpsError, match="use --group with one of: cpu, gpu"):
        scale.plan_ray([_raycluster()], 1, 2, "tpu")


def test_scale_max_below_the_live_min_is_refused() -> None:
    autoscaler = {"metadata": {"name": "d"}, "spec": {"minimum": 3, "maximum": 5}}
    with pytest.raises(OpsError, match="minimum 3 above maximum 2"):
        scale.plan_dask([autoscaler], None, 2)


def test_default_deny_recognised_only_when_it_allows_nothing() -> None:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    deny = {"metadata": {"name": "d"}, "spec": spec}
    allow = {"metadata": {"name": "a"}, "spec": {**spec, "egress": [{}]}}
    assert doctor.is_default_deny(deny)
    assert not doctor.is_default_deny(allow)
    assert doctor.default_deny_check("ns", [allow]).ok is False


def test_tool_check_names_the_pinned_version() -> None:
    check = doctor.tool_check("helm", "/x/helm", "v3.21.0", "v3.22.0", "install it")
    assert (check.ok, check.detail, check.fix) == (False, "/x/helm: 3.21.0, pinned v3.22.0", "install it")
    assert doctor.tool_check("helm", "/x/helm", "v3.22.0", "v3.22.0", "").ok


def test_operator_without_crds_or_deployment_is_not_deployed_not_failed() -> None:
    checks = doctor.operator_checks([], service_statuses(Snapshot(namespace="qframe")))
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("dask-operator", None, "not deployed"),
        ("ray-operator", None, "not deployed"),
    ]


def test_operator_crds_without_the_operator_fail_with_a_fix() -> None:
    crds = [{"metadata": {"name": "rayclusters.ray.io"}}]
    checks = {c.name: c for c in doctor.operator_checks(crds, service_statuses(Snapshot(namespace="qframe")))}
    assert checks["ray-operator"].ok is False
    assert "skip switch" in checks["ray-operator"].fix


def test_config_keys_of_components() -> None:
    assert config_key("object-store") == "objectStore"
    assert config_key("kafka") == "kafka"
    assert config_key("tenancy") == "labels"


def test_rollback_warning_names_the_stack_key() -> None:
    spec = ReleaseSpec("kafka", Path("charts/kafka"), "qframe", {}, "kafka", "kafka")
    warning = pulumi_warning("kafka", spec, "dev")
    assert "`qframe-research:kafka`" in warning
    assert "next `pulumi up`" in warning
    assert "Pulumi.dev.yaml" in warning


def test_unknown_stack_lists_the_stacks(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    with pytest.raises(OpsError) as caught:
        stack_file("prod", root=tmp_path)
    assert caught.value.fix == "stacks in this repository: dev"


def test_resource_paths() -> None:
    assert RESOURCES["pods"].path("qframe", "kafka-0") == "/api/v1/namespaces/qframe/pods/kafka-0"
    assert RESOURCES["rayclusters"].path("qframe") == "/apis/ray.io/v1/namespaces/qframe/rayclusters"
    assert RESOURCES["namespaces"].path(None, "qframe") == "/api/v1/namespaces/qframe"


def _dask_snapshot(phase: str, worker_ready: bool) -> Snapshot:
    def pod(name: str, component: str, ready: bool) -> dict[str, Any]:
        labels = {"dask.org/cluster-name": "dask", "dask.org/component": component}
        condition = {"type": "Ready", "status": "True" if ready else "False"}
        return {
            "metadata": {"name": name, "labels": labels},
            "status": {"phase": "Running", "conditions": [condition]},
        }

    def deployment(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": {"dask.org/cluster-name": "dask"}}, "spec": {"replicas": 1}}

    return Snapshot(
        namespace="qframe",
        daskclusters=[{"kind": "DaskCluster", "metadata": {"name": "dask"}, "status": {"phase": phase}}],
        deployments=[deployment("dask-scheduler"), deployment("dask-default-worker-1")],
        pods=[pod("dask-scheduler-x", "scheduler", True), pod("dask-default-worker-1-x", "worker", worker_ready)],
    )


def test_dask_cluster_left_pending_by_the_operator_race_is_judged_by_its_pods() -> None:
    # Seen on the real node: the operator's own patch leaves phase "Pending" after its Service
    # handler set "Running", though scheduler and workers all run.
    rows = {s.service: s for s in service_statuses(_dask_snapshot("Pending", worker_ready=True))}
    assert rows["dask"].state == "ready", rows["dask"]
    rows = {s.service: s for s in service_statuses(_dask_snapshot("Pending", worker_ready=False))}
    assert rows["dask"].state == "degraded"
    assert "dask is Pending" in rows["dask"].problems
