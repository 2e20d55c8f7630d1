"""`qframe-ops` against the dev stack on the real node.

The stack is up (tests/e2e/conftest.py); this file sorts before test_pulumi_up.py, whose last test
destroys the stack, and leaves the stack as it found it (a broken service is restored and waited
for). With QFRAME_RECORD_OPS=1 the Kubernetes API responses (and helm's release list) each command
received are written to tests/fixtures/ops/, where the unit tier replays them
(tests/unit/test_ops_cli.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from infra.offline import REPO_ROOT
from infra.ops import cli
from infra.ops.helm import Helm
from infra.ops.kube import HttpKubeApi, RecordingKubeApi
from tests.e2e.conftest import DevStack
from tests.e2e.in_cluster import NAMESPACE, kubectl
from tests.harness.ops_fakes import RecordingHelm, save_recording

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

RECORDINGS = REPO_ROOT / "tests" / "fixtures" / "ops"
RECORD = os.environ.get("QFRAME_RECORD_OPS") == "1"
READY_TIMEOUT_S = 300
TEST_NAMESPACE = "qframe-ops-test"

Ops = Callable[..., Result]


@pytest.fixture
def ops(devstack: DevStack) -> Ops:
    """Runs qframe-ops in-process against the node; ``record=<scenario>`` keeps what the API answered."""

    def run(*args: str, record: str | None = None, kubeconfig: Path | None = None) -> Result:
        apis: list[RecordingKubeApi] = []
        helms: list[RecordingHelm] = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(kubeconfig or devstack.kubeconfig))
            if record and RECORD:

                def kube_api(context: str | None) -> RecordingKubeApi:
                    apis.append(RecordingKubeApi(HttpKubeApi(context=context)))
                    return apis[-1]

                def helm(context: str | None) -> RecordingHelm:
                    helms.append(RecordingHelm(Helm(context=context)))
                    return helms[-1]

                patch.setattr(cli, "make_kube_api", kube_api)
                patch.setattr(cli, "make_helm", helm)
            result = CliRunner().invoke(cli.app, list(args))
        if record and RECORD:
            save_recording(RECORDINGS / f"{record}.json", apis, helms, args)
        return result

    return run


def _json(result: Result) -> dict[str, Any]:
    assert result.exit_code in (0, 1), f"exit {result.exit_code}\n{result.output}"
    return dict(json.loads(result.stdout))


def _wait_status(ops: Ops, expect: int) -> Result:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        result = ops("status", "-o", "json")
        if result.exit_code == expect or time.monotonic() > deadline:
            return result
        time.sleep(3)


def test_status_reports_every_deployed_service_ready(devstack: DevStack, ops: Ops) -> None:
    assert _wait_status(ops, 0).exit_code == 0
    result = ops("status", "-o", "json", record="status-healthy")
    assert result.exit_code == 0, result.output
    rows = {row["service"]: row for row in _json(result)["items"]}
    for service in ("object-store", "postgres", "kafka", "mlflow", "jupyterhub"):
        assert rows[service]["state"] == "ready", rows[service]
        assert rows[service]["ready_replicas"] == rows[service]["desired"] >= 1
        assert re.fullmatch(rf"[a-z0-9-]+\.{NAMESPACE}\.svc:[0-9]+", rows[service]["endpoint"]), rows[service]
    assert rows["kafka"]["endpoint"] == f"kafka.{NAMESPACE}.svc:9092"
    for row in rows.values():
        assert row["state"] in ("ready", "not deployed"), row
    # The installed entry point, as a script or CI job would call it.
    proc = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "qframe-ops"), "status"],
        env={**os.environ, "KUBECONFIG": str(devstack.kubeconfig), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all deployed services ready" in proc.stdout


def test_status_names_a_statefulset_scaled_to_zero_and_exits_nonzero(devstack: DevStack, ops: Ops) -> None:
    kubectl(devstack, "scale", "statefulset", "kafka", "-n", NAMESPACE, "--replicas=0")
    try:
        # Until the old pod is gone it still counts as ready, and scaling back up at once would let
        # the wait below pass on it while its replacement is still starting (seen on the real node:
        # kafka-0 unready in the tests that followed).
        kubectl(devstack, "wait", "--for=delete", "pod/kafka-0", "-n", NAMESPACE, "--timeout=180s")
        result = ops("status", "-o", "json", record="status-kafka-scaled-to-zero")
        assert result.exit_code == 1, result.output
        document = _json(result)
        assert document["unhealthy"] == ["kafka"]
        (kafka,) = [row for row in document["items"] if row["service"] == "kafka"]
        assert kafka["problems"] == ["StatefulSet/kafka is scaled to 0"]
        table = ops("status")
        assert table.exit_code == 1
        assert "UNHEALTHY kafka: StatefulSet/kafka is scaled to 0" in table.stdout
    finally:
        kubectl(devstack, "scale", "statefulset", "kafka", "-n", NAMESPACE, "--replicas=1")
        kubectl(devstack, "rollout", "status", "statefulset/kafka", "-n", NAMESPACE, f"--timeout={READY_TIMEOUT_S}s")
    restored = _wait_status(ops, 0)
    assert restored.exit_code == 0, restored.output


def test_doctor_passes_on_the_deployed_stack(ops: Ops) -> None:
    result = ops("doctor", "-o", "json", record="doctor")
    document = _json(result)
    assert result.exit_code == 0, result.output
    results = {row["check"]: row["result"] for row in document["items"]}
    assert document["failed"] == []
    for check in ("cluster reachable", f"namespace {NAMESPACE}", "pod security", "default-deny policy"):
        assert results[check] == "ok", results
    assert results["services ready"] == "ok"
    assert results["helm releases"] == "ok"


def test_diff_is_clean_then_shows_exactly_the_object_edited_live(devstack: DevStack, ops: Ops) -> None:
    clean = ops("charts", "diff", "-o", "json")
    document = _json(clean)
    assert clean.exit_code == 0, json.dumps(document["items"], indent=1)
    assert document["drifted"] == 0
    assert document["compared"] > 20
    limits = json.loads(kubectl(devstack, "get", "limitrange", "-n", NAMESPACE, "-o", "json"))["items"]
    (limit_range,) = limits
    name = limit_range["metadata"]["name"]
    original = limit_range["spec"]["limits"][0]["default"]["memory"]
    patch = [{"op": "replace", "path": "/spec/limits/0/default/memory", "value": "777Mi"}]
    kubectl(devstack, "patch", "limitrange", name, "-n", NAMESPACE, "--type=json", "-p", json.dumps(patch))
    try:
        drifted = ops("charts", "diff", "-o", "json", record="diff-limitrange-edited")
        assert drifted.exit_code == 1, drifted.output
        rows = _json(drifted)["items"]
        assert [(r["release"], r["object"], r["state"]) for r in rows] == [
            ("tenant-baseline", f"LimitRange/{name}", "changed")
        ]
        assert rows[0]["changes"] == [f"spec.limits[0].default.memory: {original} -> live 777Mi"]
    finally:
        patch[0]["value"] = original
        kubectl(devstack, "patch", "limitrange", name, "-n", NAMESPACE, "--type=json", "-p", json.dumps(patch))


@pytest.fixture
def test_release(devstack: DevStack) -> Iterator[str]:
    """tenant-baseline installed through pyhelm3 as the test's own release (two revisions) in a scratch namespace."""
    kubectl(devstack, "create", "namespace", TEST_NAMESPACE)
    helm = Helm(kubeconfig=str(devstack.kubeconfig))
    try:

        async def install() -> None:
            chart = await helm.client.get_chart(REPO_ROOT / "charts" / "tenant-baseline")
            for memory in ("512Mi", "768Mi"):
                values = {"limitRange": {"enabled": True, "default": {"memory": memory}}}
                await helm.client.install_or_upgrade_release(
                    "ops-rollback", chart, values, namespace=TEST_NAMESPACE, wait=True
                )

        asyncio.run(install())
        yield "ops-rollback"
    finally:
        kubectl(devstack, "delete", "namespace", TEST_NAMESPACE, "--wait=false", check=False)


def test_releases_history_and_rollback_of_a_release_installed_by_the_test(
    devstack: DevStack, ops: Ops, test_release: str
) -> None:
    listed = ops("releases", "-n", TEST_NAMESPACE, "-o", "json")
    assert listed.exit_code == 0, listed.output
    (row,) = _json(listed)["items"]
    assert (row["release"], row["status"], row["revision"]) == (test_release, "deployed", 2)
    assert row["chart"].startswith("tenant-baseline-")

    history = ops("history", test_release, "-n", TEST_NAMESPACE, "-o", "json")
    assert [(r["revision"], r["status"]) for r in _json(history)["items"]] == [(1, "superseded"), (2, "deployed")]

    rolled = ops("rollback", test_release, "1", "-n", TEST_NAMESPACE, "-o", "json")
    assert rolled.exit_code == 0, rolled.output
    (result,) = _json(rolled)["items"]
    assert (result["revision"], result["status"]) == (3, "deployed")
    assert result["pulumi"] == f"release '{test_release}' is not part of stack dev"
    live = json.loads(kubectl(devstack, "get", "limitrange", "-n", TEST_NAMESPACE, "-o", "json"))["items"]
    assert live[0]["spec"]["limits"][0]["default"]["memory"] == "512Mi"

    missing = ops("history", "nosuch", "-n", TEST_NAMESPACE)
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        f"error: release 'nosuch' not found in namespace {TEST_NAMESPACE}; list the releases with `qframe-ops releases`"
    )


def test_logs_of_a_service(ops: Ops) -> None:
    result = ops("logs", "kafka", "--tail", "20", "-o", "json")
    assert result.exit_code == 0, result.output
    # The service's pods: the broker and, on the real node, the completed bootstrap Job's pod too.
    records = {r["pod"]: r for r in _json(result)["items"]}
    assert "kafka-0" in records, sorted(records)
    assert all(p == "kafka-0" or p.startswith("kafka-bootstrap-topics-") for p in records), sorted(records)
    assert 0 < len(records["kafka-0"]["lines"]) <= 20
    assert all(len(r["lines"]) <= 20 for r in records.values())


def _bounds(devstack: DevStack, resource: str) -> list[tuple[int, int]]:
    found = kubectl(devstack, "get", resource, "-n", NAMESPACE, "-o", "json", check=False)
    if not found.lstrip().startswith("{"):
        return []  # the kind is not served: the CRD is not installed
    bounds = []
    for cr in json.loads(found)["items"]:
        if resource == "daskautoscalers":
            bounds.append((cr["spec"]["minimum"], cr["spec"]["maximum"]))
        else:
            bounds += [(g["minReplicas"], g["maxReplicas"]) for g in cr["spec"]["workerGroupSpecs"]]
    return bounds


def test_scale_changes_the_live_custom_resource_or_says_not_deployed(devstack: DevStack, ops: Ops) -> None:
    for target, resource in (("dask", "daskautoscalers"), ("ray", "rayclusters")):
        before = _bounds(devstack, resource)
        if not before:
            result = ops("scale", target, "--min", "1", "--max", "3")
            assert result.exit_code == 2, result.output
            assert f"{target}: not deployed" in result.stderr
            continue
        try:
            result = ops("scale", target, "--min", "1", "--max", "3", "-o", "json")
            assert result.exit_code == 0, result.output
            assert _bounds(devstack, resource) == [(1, 3)] * len(before)
            lines = _json(result)["pulumi_config"]
            if target == "dask":
                assert lines == [
                    "pulumi config set --path 'dask.maxWorkers' 3",
                    "pulumi config set --path 'dask.minWorkers' 1",
                ]
            else:
                assert "pulumi config set --path 'ray.workerGroups[0].maxReplicas' 3" in lines
        finally:
            (low, high) = before[0]
            ops("scale", target, "--min", str(low), "--max", str(high))
        assert _bounds(devstack, resource) == before


def test_rbac_forbidden_is_one_line_exit_2(devstack: DevStack, ops: Ops, tmp_path: Path) -> None:
    kubectl(devstack, "create", "serviceaccount", "ops-nobody", "-n", NAMESPACE)
    try:
        token = kubectl(devstack, "create", "token", "ops-nobody", "-n", NAMESPACE, "--duration=10m").strip()
        config = yaml.safe_load(devstack.kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": token}
        kubeconfig = tmp_path / "nobody.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        result = ops("status", record="status-forbidden", kubeconfig=kubeconfig)
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert "\n" not in line
        assert line.startswith("error: forbidden: ")
        assert "ops-nobody" in line
        releases = ops("releases", kubeconfig=kubeconfig)
        assert releases.exit_code == 2, releases.output
        assert releases.stderr.startswith("error: forbidden: ")
    finally:
        kubectl(devstack, "delete", "serviceaccount", "ops-nobody", "-n", NAMESPACE, check=False)
