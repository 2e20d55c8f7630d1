"""`qframe-ops` against a fake API built from responses recorded on the real node.

The recordings in tests/fixtures/ops/ come from tests/e2e/test_ops_live.py (QFRAME_RECORD_OPS=1):
each holds every request a command made and what the API server (and helm) answered. Replaying
them checks parsing, health rules, output formats and exit codes without a cluster.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner, Result

from infra.ops import cli
from infra.ops.kube import Cluster, RecordedKubeApi
from infra.ops.services import Snapshot, service_statuses
from tests.harness.ops_fakes import load_recording

pytestmark = pytest.mark.unit


def replay(scenario: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Result, RecordedKubeApi]:
    """Runs the recorded command line (or ``args``) with the recording as the cluster."""
    api, helm, argv = load_recording(scenario)
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    monkeypatch.setattr(cli, "make_helm", lambda context: helm)
    return CliRunner().invoke(cli.app, list(args or argv)), api


def test_healthy_stack_status_is_ready_and_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = replay("status-healthy", monkeypatch)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    rows = {row["service"]: row for row in document["items"]}
    assert document["unhealthy"] == []
    for service in ("object-store", "postgres", "kafka", "mlflow", "jupyterhub"):
        assert rows[service]["state"] == "ready"
        assert rows[service]["ready_replicas"] == rows[service]["desired"] >= 1
    assert rows["kafka"]["workloads"] == ["StatefulSet/kafka"]
    assert rows["kafka"]["endpoint"] == "kafka.qframe.svc:9092"
    assert rows["postgres"]["endpoint"] == "postgres.qframe.svc:5432"


def test_same_recording_as_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = replay("status-healthy", monkeypatch, "status", "--output", "table")
    assert result.exit_code == 0, result.output
    assert "all deployed services ready" in result.stdout
    for service in ("object-store", "postgres", "kafka", "mlflow", "jupyterhub"):
        assert service in result.stdout


def test_statefulset_scaled_to_zero_is_named_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = replay("status-kafka-scaled-to-zero", monkeypatch)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["unhealthy"] == ["kafka"]
    (kafka,) = [row for row in document["items"] if row["service"] == "kafka"]
    assert (kafka["state"], kafka["desired"], kafka["problems"]) == (
        "scaled to 0",
        0,
        ["StatefulSet/kafka is scaled to 0"],
    )


def test_components_absent_from_the_cluster_are_not_deployed_not_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    api, _, _ = load_recording("status-healthy")
    snapshot = cli.take_snapshot(Cluster(api, "qframe"))
    # Without the CRDs the API has no such kinds: the snapshot says so instead of failing.
    without_compute = Snapshot(**{**snapshot.__dict__, "daskclusters": None, "rayclusters": None})
    rows = {s.service: s for s in service_statuses(without_compute)}
    for service in ("dask", "ray"):
        assert rows[service].state == "not deployed"
        assert rows[service].healthy


def test_forbidden_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = replay("status-forbidden", monkeypatch)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith("error: forbidden: ")
    assert "ops-nobody" in line
    assert "RBAC" in line


def test_doctor_passes_on_the_recorded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "tool_checks", list)
    result, _ = replay("doctor", monkeypatch)
    assert result.exit_code == 0, result.output
    results = {row["check"]: row["result"] for row in json.loads(result.stdout)["items"]}
    assert results["pod security"] == "ok"
    assert results["default-deny policy"] == "ok"
    assert results["services ready"] == "ok"
    assert results["helm releases"] == "ok"


def test_doctor_prints_the_fix_of_each_failing_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "tool_checks", list)
    api, helm, _ = load_recording("doctor")
    responses = api._responses  # the recording, edited the way a broken namespace would answer
    ns_key = "GET /api/v1/namespaces/qframe"
    namespace = json.loads(json.dumps(responses[ns_key]))
    del namespace["body"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    responses[ns_key] = namespace
    policies_key = "GET /apis/networking.k8s.io/v1/namespaces/qframe/networkpolicies"
    policies = json.loads(json.dumps(responses[policies_key]))
    policies["body"]["items"] = [p for p in policies["body"]["items"] if p["spec"].get("podSelector")]
    responses[policies_key] = policies
    monkeypatch.setattr(cli, "make_kube_api", lambda context: api)
    monkeypatch.setattr(cli, "make_helm", lambda context: helm)
    result = CliRunner().invoke(cli.app, ["doctor"])
    assert result.exit_code == 1, result.output
    fixes = [line for line in result.stderr.splitlines() if line.startswith("fix ")]
    assert fixes == [
        "fix pod security: kubectl label --overwrite namespace qframe pod-security.kubernetes.io/enforce=restricted "
        "(or `pulumi up`: the Tenancy component sets it)",
        "fix default-deny policy: helm upgrade --install tenant-baseline charts/tenant-baseline -n qframe "
        "(or `pulumi up`: the Tenancy component installs it)",
    ]


def test_watch_refreshes_until_interrupted_and_keeps_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result, api = replay("status-kafka-scaled-to-zero", monkeypatch, "status", "--watch", "--interval", "0.5")
    assert result.exit_code == 1, result.output
    assert sleeps == [0.5, 0.5]
    # One snapshot up front and one per completed refresh: each lists the deployments once.
    deployments = [key for key, _ in api.requests if key.endswith("/deployments")]
    assert len(deployments) == 2
    assert "UNHEALTHY kafka" in result.stdout
