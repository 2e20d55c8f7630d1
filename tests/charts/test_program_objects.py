"""Every object the program would create, for every stack file, checked against the cluster's
schemas and the platform's security rules (helm Releases expanded with the real helm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfig, parse_raw_config
from infra.offline import load_stack_file, run_program, stack_name_of
from tests.harness.k8s_schema import schema_errors
from tests.harness.operator_crs import cr_schema_errors, is_operator_cr, pods_as_workloads
from tests.harness.program_objects import rendered_objects
from tests.harness.security import CLUSTER_SCOPED_KINDS, is_default_deny, namespace_violations, violations
from tests.harness.stacks import happy_stack_files
from tools.versions import pinned_versions

pytestmark = pytest.mark.charts

STACK_FILES = happy_stack_files()


@pytest.fixture(scope="module", params=STACK_FILES, ids=lambda p: p.name)
def stack(request: pytest.FixtureRequest) -> tuple[StackConfig, list[dict[str, Any]]]:
    path: Path = request.param
    cfg = parse_raw_config(load_stack_file(path), stack=stack_name_of(path))
    return cfg, rendered_objects(run_program(path))


def _ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata'].get('name')}"


def test_objects_match_the_pinned_kubernetes_schemas(stack: tuple[StackConfig, list[dict[str, Any]]]) -> None:
    _, objects = stack
    kube_version = pinned_versions()["KUBE_VERSION"]
    # The operators' custom resources are checked against their pinned CRDs' own schemas.
    errors = [
        e
        for obj in objects
        for e in (cr_schema_errors(obj) if is_operator_cr(obj) else schema_errors(obj, kube_version))
    ]
    assert errors == []


def test_objects_follow_the_security_rules(stack: tuple[StackConfig, list[dict[str, Any]]]) -> None:
    _, objects = stack
    # Pods the operators create from the DaskCluster/RayCluster templates follow the same rules.
    workloads = [pod for obj in objects for pod in pods_as_workloads(obj)]
    assert [v for obj in [*objects, *workloads] for v in violations(obj)] == []
    assert namespace_violations(objects) == []


def test_namespace_is_locked_down_by_default(stack: tuple[StackConfig, list[dict[str, Any]]]) -> None:
    _, objects = stack
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert any(is_default_deny(p) for p in policies), [_ref(p) for p in policies]
    dns = [
        p
        for p in policies
        if any(port.get("port") == 53 for rule in p["spec"].get("egress", []) for port in rule.get("ports", []))
    ]
    assert dns, "pods could not resolve names: no policy allows DNS egress"
    # The platform namespace admits traffic per service, never pod-to-pod wholesale.
    assert not [p for p in policies if "same-namespace" in p["metadata"]["name"]]
    assert [o for o in objects if o["kind"] == "LimitRange"]


def test_every_namespaced_object_lands_in_the_stack_namespace(stack: tuple[StackConfig, list[dict[str, Any]]]) -> None:
    cfg, objects = stack
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            assert obj["metadata"].get("namespace") == cfg.namespace, _ref(obj)


def test_stack_labels_reach_every_object(stack: tuple[StackConfig, list[dict[str, Any]]]) -> None:
    cfg, objects = stack
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        for key, value in cfg.labels.items():
            assert labels.get(key) == value, f"{_ref(obj)} lacks label {key}={value}"
