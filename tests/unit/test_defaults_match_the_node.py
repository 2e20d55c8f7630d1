"""The network defaults of the charts and the stack config describe the real dev node.

The DNS egress rule admits only pods with the charts' networkPolicy.dns labels in that namespace,
and pg_hba admits logins only from postgres.inCluster.podNetworks: if these drifted from what the
node runs, init Jobs could not resolve names and clients could not log in on `make up`.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from infra.config import StackConfig
from tools.devstack.node.addons import coredns_manifests
from tools.devstack.node.layout import NetworkPlan
from tools.paths import REPO_ROOT

pytestmark = pytest.mark.unit

CHARTS_WITH_DNS_RULE = ("minio", "postgres", "tenant-baseline")


def _coredns_pods() -> tuple[str, dict[str, str]]:
    (deployment,) = [m for m in coredns_manifests(NetworkPlan(), "coredns:test") if m["kind"] == "Deployment"]
    labels: dict[str, Any] = deployment["spec"]["template"]["metadata"]["labels"]
    return deployment["metadata"]["namespace"], labels


@pytest.mark.parametrize("chart", CHARTS_WITH_DNS_RULE)
def test_chart_dns_rule_selects_the_nodes_coredns_pods(chart: str) -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / chart / "values.yaml").read_text(encoding="utf-8"))
    dns = values["networkPolicy"]["dns"]
    namespace, labels = _coredns_pods()
    assert dns["enabled"] is True
    assert dns["namespace"] == namespace
    assert dns["podLabels"].items() <= labels.items()


def test_pg_hba_default_is_the_nodes_pod_network() -> None:
    assert StackConfig().postgres.in_cluster.pod_networks == [NetworkPlan().pod_cidr]
    values = yaml.safe_load((REPO_ROOT / "charts" / "postgres" / "values.yaml").read_text(encoding="utf-8"))
    assert values["auth"]["allowedCIDRs"] == [NetworkPlan().pod_cidr]
