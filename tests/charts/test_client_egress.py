"""NetworkPolicies of the service charts, evaluated: who may open a connection to the server.

Under a default-deny namespace a connection needs both the client's egress and the server's
ingress. The evaluator below applies the rendered policies the way the Kubernetes API defines
them (a pod selected by no policy of a direction is open in that direction; otherwise some rule
of some selecting policy must match peer and port), limited to same-namespace podSelector peers,
which is all these charts render for in-namespace clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts
from tools.paths import REPO_ROOT

pytestmark = pytest.mark.charts

Labels = Mapping[str, str]
# chart -> (server port, the other port a client must not reach)
SERVICES = {"minio": (9000, 5432), "postgres": (5432, 9000), "kafka": (9092, 9093)}
CLIENT = {"qframe.io/e2e-client": "true"}
REMOTE_CLIENT = {"qframe.io/remote-client": "true"}
STRANGER = {"app.kubernetes.io/name": "someone-else"}


def _selects(selector: Mapping[str, Any], labels: Labels) -> bool:
    assert not selector.get("matchExpressions"), "the evaluator handles matchLabels only"
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def _rule_allows(rule: Mapping[str, Any], peers_key: str, peer: Labels, port: int) -> bool:
    peers = rule.get(peers_key)
    peer_ok = peers is None or any(
        "podSelector" in p and "namespaceSelector" not in p and _selects(p["podSelector"], peer) for p in peers
    )
    ports = rule.get("ports")
    port_ok = ports is None or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
    return peer_ok and port_ok


def _direction_allows(
    policies: Sequence[Mapping[str, Any]], direction: str, pod: Labels, peer: Labels, port: int
) -> bool:
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p for p in policies if direction in p["spec"].get("policyTypes", []) and _selects(p["spec"]["podSelector"], pod)
    ]
    if not selecting:
        return True
    return any(_rule_allows(rule, peers_key, peer, port) for p in selecting for rule in p["spec"].get(key) or [])


def connection_allowed(policies: Sequence[Mapping[str, Any]], client: Labels, server: Labels, port: int) -> bool:
    return _direction_allows(policies, "Egress", client, server, port) and _direction_allows(
        policies, "Ingress", server, client, port
    )


def _render(chart: str, clients: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Labels]:
    objects = charts.render_with_values(REPO_ROOT / "charts" / chart, {"networkPolicy": {"allowedClients": clients}})
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (server,) = [o for o in objects if o["kind"] == "StatefulSet"]
    return policies, server["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("chart", sorted(SERVICES))
def test_an_admitted_client_can_connect_and_nobody_else_can(chart: str) -> None:
    port, other_port = SERVICES[chart]
    clients = [
        {"podSelector": {"matchLabels": CLIENT}},
        {"podSelector": {"matchLabels": REMOTE_CLIENT}, "namespaceSelector": {"matchLabels": {"team": "x"}}},
    ]
    policies, server = _render(chart, clients)
    assert connection_allowed(policies, CLIENT, server, port)
    assert not connection_allowed(policies, CLIENT, server, other_port)
    assert not connection_allowed(policies, STRANGER, server, port)
    # The admitted client gets no egress beyond the server: not to a stranger on the same port.
    assert not connection_allowed(policies, CLIENT, STRANGER, port)


@pytest.mark.parametrize("chart", sorted(SERVICES))
def test_client_egress_is_rendered_only_for_clients_in_the_release_namespace(chart: str) -> None:
    clients = [
        {"podSelector": {"matchLabels": CLIENT}},
        {"podSelector": {"matchLabels": REMOTE_CLIENT}, "namespaceSelector": {"matchLabels": {"team": "x"}}},
    ]
    policies, _ = _render(chart, clients)
    egress = [p for p in policies if p["metadata"]["labels"]["app.kubernetes.io/component"] == "client-egress"]
    assert [p["spec"]["podSelector"] for p in egress] == [{"matchLabels": CLIENT}]
    assert [p["spec"]["policyTypes"] for p in egress] == [["Egress"]]


@pytest.mark.parametrize("chart", sorted(SERVICES))
def test_without_clients_no_client_egress_is_rendered(chart: str) -> None:
    policies, _ = _render(chart, [])
    assert [p for p in policies if "client-egress" in p["metadata"]["name"]] == []


def test_charts_directory_has_the_services_under_test() -> None:
    assert {p.name for p in charts.discover_charts(REPO_ROOT)} >= set(SERVICES), Path(REPO_ROOT / "charts")
