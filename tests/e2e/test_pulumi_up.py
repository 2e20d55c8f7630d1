"""`pulumi up` of the dev stack against a real API server, asserted over every registered resource.

Nothing here names a component: the expectations come from running the same program offline
(Pulumi mocks + real helm rendering), so each component added later is covered automatically.
Tests run in file order: up, idempotence, an in-place change, destroy.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from infra.offline import REPO_ROOT, run_program
from tests.e2e.conftest import DevStack
from tests.harness.program_objects import rendered_objects
from tests.harness.security import CLUSTER_SCOPED_KINDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DEV_STACK = REPO_ROOT / "Pulumi.dev.yaml"
PART_OF = "app.kubernetes.io/part-of=qframe-research"
# Claims made from volumeClaimTemplates carry the pod template's selector labels, not part-of.
PART_OF_INSTANCE_ANY = "app.kubernetes.io/instance"
# Ops that would recreate a resource (and lose the data of a stateful one).
REPLACING_OPS = {"replace", "create-replacement", "delete-replaced"}


def _kubectl_json(stack: DevStack, *args: str) -> dict[str, Any]:
    return dict(json.loads(stack.cluster.kubectl(*args, "-o", "json")))


def _resource_arg(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"].lower()
    return f"{kind}.{version}.{group}" if group else kind


def _live(stack: DevStack, obj: dict[str, Any]) -> dict[str, Any]:
    args = ["get", _resource_arg(obj), obj["metadata"]["name"]]
    if obj["kind"] not in CLUSTER_SCOPED_KINDS:
        args += ["-n", obj["metadata"]["namespace"]]
    return _kubectl_json(stack, *args)


def _state_urns(stack: DevStack) -> set[str]:
    exported = json.loads(stack.workspace.run("stack", "export", "--stack", "dev").stdout)
    return {r["urn"] for r in exported["deployment"].get("resources") or []}


def test_make_up_reports_the_stack_outputs(devstack: DevStack) -> None:
    outputs = devstack.workspace.outputs()
    assert outputs["namespace"] == "qframe"
    assert "namespace" in devstack.up_output
    assert "KUBECONFIG=" in devstack.up_output


def test_every_registered_resource_is_in_the_stack(devstack: DevStack) -> None:
    expected = {r.urn for r in run_program(DEV_STACK).resources}
    deployed = _state_urns(devstack)
    providers = {u for u in deployed if "::pulumi:providers:" in u and "::default" in u}
    # The provider expands a ConfigFile (the operators' CRD files) into its children only at deploy
    # time; offline runs register the ConfigFile itself, which `expected <= deployed` checks.
    expanded = {u for u in deployed if "$kubernetes:yaml/v2:ConfigFile$" in u}
    assert expanded, "no CRD from the operators' ConfigFiles was deployed"
    assert expected
    assert expected <= deployed, sorted(expected - deployed)
    unexpected = (
        deployed - expected - providers - expanded - {u for u in deployed if u.endswith("::qframe-research-dev")}
    )
    assert unexpected == set()


def test_every_object_exists_and_workloads_are_ready(devstack: DevStack) -> None:
    objects = rendered_objects(run_program(DEV_STACK))
    assert objects
    for obj in objects:
        live = _live(devstack, obj)
        status = live.get("status", {})
        kind = obj["kind"]
        if kind in ("Deployment", "StatefulSet"):
            want = live["spec"].get("replicas", 1)
            assert status.get("readyReplicas", 0) == want, f"{kind}/{obj['metadata']['name']} not ready: {status}"
        elif kind == "DaemonSet":
            assert status.get("numberReady") == status.get("desiredNumberScheduled"), status
        elif kind == "Job":
            assert status.get("succeeded", 0) >= 1, f"Job/{obj['metadata']['name']} did not complete: {status}"
        elif kind == "PersistentVolumeClaim":
            assert status.get("phase") == "Bound", f"PVC/{obj['metadata']['name']} is {status.get('phase')}"


def test_every_volume_claim_template_got_a_bound_volume(devstack: DevStack) -> None:
    objects = rendered_objects(run_program(DEV_STACK))
    wanted = sum(
        len(o["spec"].get("volumeClaimTemplates", [])) * o["spec"].get("replicas", 1)
        for o in objects
        if o["kind"] == "StatefulSet"
    )
    claims = _kubectl_json(devstack, "get", "pvc", "-A", "-l", PART_OF_INSTANCE_ANY)["items"]
    bound = [c for c in claims if c["status"].get("phase") == "Bound"]
    assert wanted > 0, "no StatefulSet asks for storage; the check would prove nothing"
    assert len(bound) >= wanted, [(c["metadata"]["name"], c["status"].get("phase")) for c in claims]


def test_a_second_up_changes_nothing(devstack: DevStack) -> None:
    devstack.workspace.run("preview", "--expect-no-changes", "--stack", "dev", kubeconfig=devstack.kubeconfig)
    up = devstack.workspace.run(
        "up", "--yes", "--skip-preview", "--expect-no-changes", "--stack", "dev", kubeconfig=devstack.kubeconfig
    )
    assert up.returncode == 0


def test_a_stateless_change_updates_exactly_the_affected_resources_in_place(devstack: DevStack) -> None:
    override = {"labels": {"team": "e2e-relabelled"}}
    before = {r.urn: r.inputs for r in run_program(DEV_STACK).resources}
    after = {r.urn: r.inputs for r in run_program(DEV_STACK, overrides=override).resources}
    expected_updates = {urn for urn in before if before[urn] != after.get(urn)}
    assert expected_updates, "the override changed no resource input; the test would prove nothing"

    devstack.workspace.set_config("labels.team", "e2e-relabelled")
    steps = devstack.workspace.preview_steps(devstack.kubeconfig)
    ops = {step["urn"]: step["op"] for step in steps}
    replaced = sorted(urn for urn, op in ops.items() if op in REPLACING_OPS)
    assert replaced == [], f"a label change would replace: {replaced}"
    updated = {urn for urn, op in ops.items() if op == "update"}
    assert updated == expected_updates

    devstack.workspace.up(devstack.kubeconfig)
    namespace = _kubectl_json(devstack, "get", "namespace", "qframe")
    assert namespace["metadata"]["labels"]["team"] == "e2e-relabelled"
    devstack.workspace.run("preview", "--expect-no-changes", "--stack", "dev", kubeconfig=devstack.kubeconfig)


def _ours_everywhere(devstack: DevStack) -> list[str]:
    kinds = devstack.cluster.kubectl("api-resources", "--verbs=list", "-o", "name").split()
    # Events and leases are written by the control plane about our objects, not by us.
    kinds = [k for k in kinds if not k.startswith(("events", "leases"))]
    listing = json.loads(devstack.cluster.kubectl("get", ",".join(kinds), "-A", "-l", PART_OF, "-o", "json"))
    return [f"{i['kind']}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in listing["items"]]


def test_destroy_leaves_nothing_of_ours(devstack: DevStack) -> None:
    assert _ours_everywhere(devstack), "nothing of ours was found before destroy; the check would prove nothing"
    devstack.workspace.destroy(devstack.kubeconfig)
    deadline = time.monotonic() + 120
    leftovers = _ours_everywhere(devstack)
    while leftovers and time.monotonic() < deadline:
        time.sleep(2)  # namespace deletion is finished asynchronously by the namespace controller
        leftovers = _ours_everywhere(devstack)
    assert leftovers == []
    helm_secrets = _kubectl_json(devstack, "get", "secrets", "-A", "-l", "owner=helm")
    assert helm_secrets["items"] == []
    assert _state_urns(devstack) == set()
