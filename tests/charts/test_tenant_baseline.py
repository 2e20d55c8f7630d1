"""Chart unit tests for charts/tenant-baseline: "should render X when Y is set"."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts

pytestmark = pytest.mark.charts

CHART = charts.REPO_ROOT / "charts" / "tenant-baseline"
NAMESPACE = "team-alpha"


def render(values: Mapping[str, Any] | None = None, release: str = "alpha") -> dict[tuple[str, str], dict[str, Any]]:
    objects = charts.render_with_values(CHART, values or {}, namespace=NAMESPACE, release=release)
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_defaults_render_deny_dns_and_limit_range_but_no_same_namespace_allow() -> None:
    # A blanket same-namespace allow would let any compromised pod reach every service of the
    # namespace: it is opt-in, each service admits its named clients instead.
    assert sorted(render()) == [
        ("LimitRange", "alpha-tenant-baseline-container-defaults"),
        ("NetworkPolicy", "alpha-tenant-baseline-allow-dns"),
        ("NetworkPolicy", "alpha-tenant-baseline-default-deny"),
    ]


def test_every_object_is_in_the_release_namespace() -> None:
    quota_on = {"resourceQuota": {"enabled": True, "hard": {"pods": 3}}}
    assert {o["metadata"]["namespace"] for o in render(quota_on).values()} == {NAMESPACE}


def test_default_deny_selects_every_pod_and_allows_nothing() -> None:
    spec = render()["NetworkPolicy", "alpha-tenant-baseline-default-deny"]["spec"]
    assert spec == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_default_deny_is_rendered_even_with_every_allow_disabled() -> None:
    objects = render({"networkPolicy": {"dns": {"enabled": False}, "sameNamespace": {"enabled": False}}})
    assert [name for kind, name in objects if kind == "NetworkPolicy"] == ["alpha-tenant-baseline-default-deny"]


def test_dns_policy_allows_udp_and_tcp_53_to_kube_dns_only() -> None:
    spec = render()["NetworkPolicy", "alpha-tenant-baseline-allow-dns"]["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert "ingress" not in spec
    (rule,) = spec["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_dns_selectors_come_from_values() -> None:
    # A default pod label is dropped by setting it to null (helm merges maps with the defaults).
    dns = {"namespace": "dns-system", "podLabels": {"k8s-app": None, "app.kubernetes.io/name": "coredns"}}
    objects = render({"networkPolicy": {"dns": dns}})
    (peer,) = objects["NetworkPolicy", "alpha-tenant-baseline-allow-dns"]["spec"]["egress"][0]["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "dns-system"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "coredns"}


def test_same_namespace_policy_allows_both_directions_within_the_namespace() -> None:
    on = {"networkPolicy": {"sameNamespace": {"enabled": True}}}
    spec = render(on)["NetworkPolicy", "alpha-tenant-baseline-allow-same-namespace"]["spec"]
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]
    assert spec["egress"] == [{"to": [{"podSelector": {}}]}]


def test_same_namespace_policy_is_omitted_when_disabled() -> None:
    objects = render({"networkPolicy": {"sameNamespace": {"enabled": False}}})
    assert ("NetworkPolicy", "alpha-tenant-baseline-allow-same-namespace") not in objects
    assert ("NetworkPolicy", "alpha-tenant-baseline-allow-dns") in objects


def test_limit_range_defaults_come_from_values_as_quantity_strings() -> None:
    objects = render({"limitRange": {"default": {"cpu": 2, "memory": "2Gi"}, "defaultRequest": {"cpu": "250m"}}})
    (limit,) = objects["LimitRange", "alpha-tenant-baseline-container-defaults"]["spec"]["limits"]
    assert limit["type"] == "Container"
    assert limit["default"] == {"cpu": "2", "memory": "2Gi"}
    assert limit["defaultRequest"] == {"cpu": "250m", "memory": "256Mi"}
    assert "max" not in limit


def test_limit_range_max_is_rendered_when_set() -> None:
    objects = render({"limitRange": {"max": {"cpu": "4", "memory": "16Gi"}}})
    (limit,) = objects["LimitRange", "alpha-tenant-baseline-container-defaults"]["spec"]["limits"]
    assert limit["max"] == {"cpu": "4", "memory": "16Gi"}


def test_limit_range_is_omitted_when_disabled() -> None:
    assert not [k for k in render({"limitRange": {"enabled": False}}) if k[0] == "LimitRange"]


def test_resource_quota_is_off_by_default_and_rendered_when_enabled() -> None:
    assert not [k for k in render() if k[0] == "ResourceQuota"]
    objects = render({"resourceQuota": {"enabled": True, "hard": {"requests.cpu": 4, "pods": 20}}})
    quota = objects["ResourceQuota", "alpha-tenant-baseline-quota"]
    # Values replace the default map entry by entry (helm merges maps), and every value is a string.
    assert quota["spec"]["hard"] == {
        "requests.cpu": "4",
        "requests.memory": "32Gi",
        "limits.cpu": "16",
        "limits.memory": "64Gi",
        "pods": "20",
    }


def test_standard_labels_cannot_be_overridden_by_common_labels() -> None:
    objects = render({"commonLabels": {"qframe.io/team": "alpha", "app.kubernetes.io/name": "hijacked"}})
    for obj in objects.values():
        labels = obj["metadata"]["labels"]
        assert labels["qframe.io/team"] == "alpha"
        assert labels["app.kubernetes.io/name"] == "tenant-baseline"
        assert labels["app.kubernetes.io/instance"] == "alpha"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_fullname_override_and_name_length() -> None:
    assert ("NetworkPolicy", "team-default-deny") in render({"fullnameOverride": "team"})
    long_release = "r" * 53  # the longest release name helm accepts
    everything_on = {
        "resourceQuota": {"enabled": True, "hard": {"pods": 3}},
        "networkPolicy": {"sameNamespace": {"enabled": True}},
    }
    names = [name for _, name in render(everything_on, release=long_release)]
    assert len(names) == 5
    for name in names:
        assert len(name) <= 63, name


def test_release_named_like_the_chart_is_not_repeated() -> None:
    assert ("NetworkPolicy", "tenant-baseline-default-deny") in render(release="tenant-baseline")


# ---------------------------------------------------------------------------------------------
# values.schema.json
# ---------------------------------------------------------------------------------------------


def _object_nodes(node: Any, path: str = "$") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        if node.get("type") == "object":
            yield path, node
        for key, child in node.items():
            yield from _object_nodes(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _object_nodes(child, f"{path}[{index}]")


def test_schema_closes_every_object_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    nodes = list(_object_nodes(schema))
    assert len(nodes) > 5
    # Fixed-shape objects say additionalProperties: false; free-form maps (labels) type their values.
    open_nodes = [path for path, node in nodes if node.get("additionalProperties") in (None, True)]
    assert open_nodes == []


def _rejected(tmp_path: Path, values: Mapping[str, Any]) -> str:
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values), encoding="utf-8")
    proc = charts.helm(
        "template", "t", CHART, "--kube-version", charts.pinned_kube_version(), "-f", values_file, check=False
    )
    assert proc.returncode != 0, f"helm accepted {values}"
    return proc.stderr


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param({"networkPolicy": {"dns": {"enabeld": True}}}, "enabeld", id="nested-typo"),
        pytest.param({"limitRange": {"default": {"gpu": "1"}}}, "gpu", id="unknown-resource"),
        pytest.param({"resourceQuota": {"hard": {"requests.cpus": "4"}}}, "requests.cpus", id="unknown-quota-key"),
        pytest.param({"limitRange": {"default": {"cpu": "lots"}}}, "/limitRange/default/cpu", id="bad-quantity"),
        pytest.param({"limitRange": {"default": {"memory": "1GB"}}}, "/limitRange/default/memory", id="bad-suffix"),
        pytest.param({"resourceQuota": {"hard": {"pods": -1}}}, "/resourceQuota/hard/pods", id="negative-count"),
        pytest.param({"networkPolicy": {"sameNamespace": {"enabled": "yes"}}}, "sameNamespace/enabled", id="bool"),
        pytest.param({"commonLabels": {"team": 7}}, "/commonLabels/team", id="label-value-type"),
        pytest.param({"commonLabels": {"bad key!": "x"}}, "bad key!", id="label-key"),
        pytest.param({"fullnameOverride": "Not_A_DNS_Label"}, "/fullnameOverride", id="name-pattern"),
        pytest.param({"fullnameOverride": "x" * 43}, "/fullnameOverride", id="name-too-long"),
        pytest.param({"networkPolicy": {"dns": {"namespaceLabels": {}}}}, "namespaceLabels", id="old-key"),
    ],
)
def test_schema_rejects_bad_values(tmp_path: Path, values: Mapping[str, Any], named: str) -> None:
    assert named in _rejected(tmp_path, values)


@pytest.mark.parametrize("quantity", ["500m", "2", "1.5", "512Mi", "4Gi", "1G", 3])
def test_schema_accepts_kubernetes_quantities(quantity: Any) -> None:
    objects = render({"limitRange": {"default": {"cpu": quantity}}})
    (limit,) = objects["LimitRange", "alpha-tenant-baseline-container-defaults"]["spec"]["limits"]
    assert limit["default"]["cpu"] == str(quantity)


def test_network_policies_can_be_turned_off_where_the_cni_ignores_them() -> None:
    objects = render({"networkPolicy": {"enabled": False}})
    assert [key for key in objects if key[0] == "NetworkPolicy"] == []
    assert ("LimitRange", "alpha-tenant-baseline-container-defaults") in objects
