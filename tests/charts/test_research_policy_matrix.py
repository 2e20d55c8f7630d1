"""Who reaches whom in the dev stack: every rendered NetworkPolicy evaluated over every workload's pods.

The objects are the program's own (mock run of Pulumi.dev.yaml, helm Releases expanded with the real
helm); the users' servers are the pods KubeSpawner creates with the labels the rendered hub config
gives them. The evaluator is tests/charts/test_client_egress.py's (the Kubernetes semantics for
same-namespace pod peers). The matrix is printed (issue 12 asks for it in the closing note) and the
research services' rows are asserted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from infra.offline import REPO_ROOT, run_program
from tests.charts.test_client_egress import connection_allowed
from tests.harness.operator_crs import is_operator_cr, pods_as_workloads
from tests.harness.program_objects import rendered_objects

pytestmark = pytest.mark.charts

# Each server and the port its clients open.
SERVERS = {
    "postgres": 5432,
    "minio": 9000,
    "kafka": 9092,
    "mlflow": 5000,
    "jupyterhub-hub": 8081,
    "jupyterhub-proxy": 8000,
    "notebook": 8888,
    # issue 13's clusters (their policies partly use matchExpressions: see the printed note)
    "dask[scheduler]": 8786,
    "ray[head]": 10001,
}


def _selector_free(policy: Mapping[str, Any]) -> bool:
    """Policies the evaluator can judge (matchLabels only); the others are reported, not guessed."""
    return "matchExpressions" not in json.dumps(policy)


@pytest.fixture(scope="module")
def world() -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    objects = rendered_objects(run_program(REPO_ROOT / "Pulumi.dev.yaml"))
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    workloads += [w for o in objects if is_operator_cr(o) for w in pods_as_workloads(o)]
    pods = {w["metadata"]["name"]: dict(w["spec"]["template"]["metadata"]["labels"]) for w in workloads}
    (hub_config,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "jupyterhub-hub-config"
    ]
    singleuser = json.loads(hub_config["data"]["hub.json"])["singleuser"]
    pods["notebook"] = {**singleuser["labels"], **singleuser["podLabels"]}
    return policies, pods


def _allowed(world: tuple[list[dict[str, Any]], dict[str, dict[str, str]]], client: str, server: str) -> bool:
    policies, pods = world
    return connection_allowed([p for p in policies if _selector_free(p)], pods[client], pods[server], SERVERS[server])


def test_the_research_services_reach_exactly_what_issue_12_lists(
    world: tuple[list[dict[str, Any]], dict[str, dict[str, str]]],
) -> None:
    policies, _pods = world
    assert all(_selector_free(p) for p in policies if p["metadata"]["name"].startswith(("jupyterhub", "mlflow")))
    expected = {
        # users' servers: MLflow, the object store, Kafka and the hub's API; never Postgres
        ("notebook", "mlflow"): True,
        ("notebook", "minio"): True,
        ("notebook", "kafka"): True,
        ("notebook", "jupyterhub-hub"): True,
        ("notebook", "postgres"): False,
        # the hub: its database, MLflow (users' accounts), the users' servers; not the object store or Kafka
        ("jupyterhub-hub", "postgres"): True,
        ("jupyterhub-hub", "mlflow"): True,
        ("jupyterhub-hub", "notebook"): True,
        ("jupyterhub-hub", "minio"): False,
        ("jupyterhub-hub", "kafka"): False,
        ("jupyterhub-proxy", "notebook"): True,
        ("jupyterhub-proxy", "jupyterhub-hub"): True,
        ("jupyterhub-proxy", "mlflow"): False,
        ("jupyterhub-proxy", "postgres"): False,
        # MLflow: its database and its object store only
        ("mlflow", "postgres"): True,
        ("mlflow", "minio"): True,
        ("mlflow", "kafka"): False,
        ("mlflow", "jupyterhub-hub"): False,
        ("mlflow", "notebook"): False,
        # nobody else reaches the research services
        ("kafka", "mlflow"): False,
        ("minio", "jupyterhub-hub"): False,
        ("postgres", "mlflow"): False,
    }
    got = {pair: _allowed(world, *pair) for pair in expected}
    assert got == expected


def test_print_the_matrix(world: tuple[list[dict[str, Any]], dict[str, dict[str, str]]]) -> None:
    """The whole matrix, one row per client pod, for the closing note (``pytest -s``)."""
    policies, pods = world
    judged = [p for p in policies if _selector_free(p)]
    skipped = sorted(p["metadata"]["name"] for p in policies if not _selector_free(p))
    lines = [f"servers (port): {', '.join(f'{s} ({p})' for s, p in SERVERS.items())}"]
    for client in sorted(pods):
        reached = [s for s in SERVERS if s != client and connection_allowed(judged, pods[client], pods[s], SERVERS[s])]
        lines.append(f"{client:>32} -> {', '.join(reached) or '-'}")
    if skipped:
        lines.append(f"(policies with matchExpressions, not evaluated here: {', '.join(skipped)})")
    print("\n" + "\n".join(lines))
    assert len(lines) > len(SERVERS)
