"""The contract every chart follows (charts/README.md), checked the same way on every chart that has
the concept, with the real helm: image block, podSecurityContext, initJob, networkPolicy, labels."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts, security

pytestmark = pytest.mark.charts

NAMESPACE = "qframe"
DIGEST = "sha256:" + "c0" * 32
# Charts with a main workload image, a hook Job (initJob) and client NetworkPolicies.
SERVICE_CHARTS = [pytest.param(charts.REPO_ROOT / "charts" / name, id=name) for name in ("kafka", "minio", "postgres")]
HOOK_JOBS = {"kafka": "bootstrap-topics", "minio": "init-buckets", "postgres": "init-databases"}


def render(chart: Path, values: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return charts.render_by_name(chart, values or {}, namespace=NAMESPACE, release=chart.name)


def workload(objects: Mapping[tuple[str, str], dict[str, Any]], chart: Path) -> dict[str, Any]:
    return objects["StatefulSet", chart.name]


def hook_job(objects: Mapping[tuple[str, str], dict[str, Any]], chart: Path) -> dict[str, Any]:
    return objects["Job", f"{chart.name}-{HOOK_JOBS[chart.name]}"]


def only_container(obj: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_digest_wins_over_tag_and_an_empty_tag_is_fine_with_a_digest(chart: Path) -> None:
    pinned = {"repository": "registry.example.com/x", "tag": "", "digest": DIGEST}
    objects = render(chart, {"image": pinned, "initJob": {"image": {**pinned, "tag": "1.0"}}})
    assert only_container(workload(objects, chart))["image"] == f"registry.example.com/x@{DIGEST}"
    assert only_container(hook_job(objects, chart))["image"] == f"registry.example.com/x@{DIGEST}"


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
@pytest.mark.parametrize("block", ["image", "initJob.image"])
def test_an_image_with_neither_tag_nor_digest_is_refused(chart: Path, block: str, tmp_path: Path) -> None:
    image = {"tag": "", "digest": ""}
    values = {"image": image} if block == "image" else {"initJob": {"image": image}}
    # The schema refuses it, naming the digest it needs ...
    message = charts.rejection_message(chart, values, tmp_path, release=chart.name)
    assert f"/{block.replace('.', '/')}/digest" in message
    # ... and the template refuses it too where schema validation is skipped.
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    proc = charts.helm(
        "template",
        "r",
        chart,
        "--kube-version",
        charts.pinned_kube_version(),
        "--skip-schema-validation",
        "--values",
        path,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{block}: both {block}.tag and {block}.digest are empty" in proc.stderr


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_latest_and_a_malformed_digest_are_refused(chart: Path, tmp_path: Path) -> None:
    assert "tag" in charts.rejection_message(chart, {"initJob": {"image": {"tag": "latest"}}}, tmp_path, release="r")
    assert "digest" in charts.rejection_message(chart, {"image": {"digest": "sha256:short"}}, tmp_path, release="r")


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_pod_security_context_comes_from_values_for_every_pod(chart: Path) -> None:
    objects = render(chart, {"podSecurityContext": {"runAsUser": 4321, "runAsGroup": 4322, "fsGroup": 4323}})
    for obj in (workload(objects, chart), hook_job(objects, chart)):
        context = obj["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (4321, 4322, 4323)
        assert context["runAsNonRoot"] is True
        assert security.violations(obj) == []


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_old_keys_are_refused(chart: Path, tmp_path: Path) -> None:
    olds: list[dict[str, Any]] = [
        {"runAsUser": 1000},
        {"securityContext": {}},
        {"toolsImage": {}},
        {"bootstrapJob": {}},
        {"storage": {}},
    ]
    for old in olds:
        (key,) = old
        assert key in charts.rejection_message(chart, old, tmp_path, release="r")


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_init_job_resources_and_hook_conventions(chart: Path) -> None:
    resources = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": 1, "memory": "64Mi"}}
    job = hook_job(render(chart, {"initJob": {"resources": resources, "backoffLimit": 2}}), chart)
    assert only_container(job)["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "1", "memory": "64Mi"},
    }
    assert job["spec"]["backoffLimit"] == 2
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "post-install,post-upgrade",
        "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation",
    }
    assert any(key.startswith("checksum/") for key in job["spec"]["template"]["metadata"]["annotations"])


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_init_job_disabled_drops_the_job_its_config_and_its_peer(chart: Path) -> None:
    component = HOOK_JOBS[chart.name]
    objects = render(chart, {"initJob": {"enabled": False}})
    leftovers = [
        key for key, obj in objects.items() if obj["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert leftovers == []
    assert ("Job", f"{chart.name}-{component}") in render(chart)
    for key, obj in objects.items():
        if key[0] == "NetworkPolicy":
            for rule in obj["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                    assert labels.get("app.kubernetes.io/component") != component, key


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_no_clients_and_no_init_job_admits_nobody(chart: Path) -> None:
    objects = render(chart, {"initJob": {"enabled": False}, "networkPolicy": {"allowedClients": []}})
    for key, obj in objects.items():
        if key[0] == "NetworkPolicy":
            # An empty "from" would admit everyone; an absent ingress admits no one.
            for rule in obj["spec"].get("ingress") or []:
                assert rule.get("from"), f"{key} has an ingress rule without peers"


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_network_policy_disabled_renders_no_policy(chart: Path) -> None:
    assert [k for k in render(chart) if k[0] == "NetworkPolicy"]
    assert [k for k in render(chart, {"networkPolicy": {"enabled": False}}) if k[0] == "NetworkPolicy"] == []


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_clients_in_other_namespaces_use_the_label_selector_shape(chart: Path) -> None:
    client = {
        "podSelector": {"matchLabels": {"role": "notebook"}},
        "namespaceSelector": {"matchLabels": {"qframe.io/tenant": "true"}},
    }
    objects = render(chart, {"networkPolicy": {"allowedClients": [client]}})
    peers = [
        peer
        for key, obj in objects.items()
        if key[0] == "NetworkPolicy"
        for rule in obj["spec"].get("ingress") or []
        for peer in rule.get("from") or []
    ]
    assert client in peers


@pytest.mark.parametrize("chart", SERVICE_CHARTS)
def test_a_client_selector_must_name_a_label(chart: Path, tmp_path: Path) -> None:
    bare = {"networkPolicy": {"allowedClients": [{"podSelector": {"qframe.io/x": "true"}}]}}
    assert "qframe.io/x" in charts.rejection_message(chart, bare, tmp_path, release="r")
    empty: dict[str, Any] = {"networkPolicy": {"allowedClients": [{"podSelector": {"matchLabels": {}}}]}}
    assert "matchLabels" in charts.rejection_message(chart, empty, tmp_path, release="r")


@pytest.mark.parametrize(
    "chart", [pytest.param(chart, id=chart.name) for chart in charts.discover_charts(charts.REPO_ROOT)]
)
def test_standard_and_common_labels_on_every_object(chart: Path) -> None:
    objects = render(chart, {"commonLabels": {"team": "research", "app.kubernetes.io/part-of": "other"}})
    for key, obj in objects.items():
        labels = obj["metadata"]["labels"]
        assert labels["team"] == "research", key
        assert labels["app.kubernetes.io/name"] == chart.name, key
        assert labels["app.kubernetes.io/instance"] == chart.name, key
        assert labels["app.kubernetes.io/part-of"] == "qframe-research", key
        assert labels["app.kubernetes.io/managed-by"] == "Helm", key
        assert labels["helm.sh/chart"].startswith(f"{chart.name}-"), key
        assert labels["app.kubernetes.io/component"], key
