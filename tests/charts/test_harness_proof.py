"""The harness can fail: a deliberately broken chart, rendered by the real helm, is caught.

tests/fixtures/charts/insecure/ plants known problems (root, no resources, the `latest` tag, no
NetworkPolicy, a password in a ConfigMap mounted without a checksum, a typo'd Service field, missing
chart files). Each assertion names one planted problem and the rule that must report it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from tests.harness import charts, k8s_schema, security

pytestmark = pytest.mark.charts

FIXTURES = charts.REPO_ROOT / "tests" / "fixtures"
INSECURE = FIXTURES / "charts" / "insecure"


@functools.cache
def insecure_objects() -> tuple[dict[str, Any], ...]:
    return tuple(charts.render(INSECURE))


def _violations() -> list[str]:
    return [v for obj in insecure_objects() for v in security.violations(obj)]


def test_fixture_charts_are_not_discovered_as_project_charts() -> None:
    assert INSECURE not in charts.discover_charts(charts.REPO_ROOT)
    assert charts.discover_charts(FIXTURES) == [INSECURE]


def test_insecure_chart_renders_with_real_helm() -> None:
    kinds = sorted(o["kind"] for o in insecure_objects())
    assert kinds == ["ConfigMap", "Deployment", "Service"]


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        pytest.param("run-as-non-root", "runAsUser is 0", id="runs-as-root"),
        pytest.param("run-as-non-root", "runAsNonRoot must be true", id="no-run-as-non-root"),
        pytest.param("resources", "resources.limits.memory is missing", id="no-limits"),
        pytest.param("resources", "resources.requests.cpu is missing", id="no-requests"),
        pytest.param("image-pinned", "uses the 'latest' tag", id="latest-tag"),
        pytest.param("no-privilege-escalation", "allowPrivilegeEscalation", id="privilege-escalation"),
        pytest.param("drop-all-capabilities", "drop must contain ALL", id="capabilities"),
        pytest.param("seccomp-runtime-default", "seccompProfile", id="seccomp"),
        pytest.param("probes", "livenessProbe is missing", id="no-liveness"),
        pytest.param("probes", "readinessProbe is missing", id="no-readiness"),
        pytest.param("no-secrets-in-configmaps", "'db_password'", id="password-in-configmap"),
        pytest.param("standard-labels", "Service/test-insecure:", id="service-without-labels"),
    ],
)
def test_security_rules_catch_planted_problem(rule: str, fragment: str) -> None:
    hits = [v for v in _violations() if v.endswith(f"[{rule}]") and fragment in v]
    assert hits, f"expected a [{rule}] violation containing {fragment!r}; got:\n" + "\n".join(_violations())


def test_violations_name_the_container() -> None:
    assert any(v.startswith("Deployment/test-insecure container 'notebook': ") for v in _violations())


def test_missing_default_deny_network_policy_is_reported() -> None:
    found = security.namespace_violations(list(insecure_objects()), charts.DEFAULT_NAMESPACE)
    assert len(found) == 1
    assert "default-deny" in found[0]
    assert "Deployment/test-insecure" in found[0]


def test_schema_validation_catches_the_typo() -> None:
    errors = [e for o in insecure_objects() for e in k8s_schema.schema_errors(o, charts.pinned_kube_version())]
    assert len(errors) == 1, errors
    assert errors[0].startswith("Service/test-insecure: spec.ports.0: ")
    assert "targetPortt" in errors[0]


def test_missing_checksum_annotation_is_reported() -> None:
    found = charts.checksum_violations(insecure_objects())
    assert len(found) == 1
    assert "ConfigMap/test-insecure-config" in found[0]


def test_chart_conventions_catch_missing_files() -> None:
    found = charts.chart_convention_violations(INSECURE)
    assert "insecure: values.schema.json is missing" in found
    assert "insecure: templates/_helpers.tpl is missing" in found
    assert "insecure: templates/NOTES.txt is missing" in found


def test_lint_failure_raises_with_helm_output(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n", encoding="utf-8")
    (broken / "templates" / "cm.yaml").write_text("{{ .Values.missing.key }}\n", encoding="utf-8")
    with pytest.raises(charts.HelmError) as caught:
        charts.lint(broken)
    assert caught.value.returncode != 0
    assert "missing" in caught.value.output


def test_missing_helm_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(charts, "HELM", tmp_path / "no-helm-here")
    with pytest.raises(charts.HelmNotInstalledError, match="run tools/install helm"):
        charts.helm("version")


def test_render_with_values_passes_a_dict() -> None:
    objects = charts.render_with_values(INSECURE, {"image": "registry.example.invalid/x:1.2.3", "replicas": 2})
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.invalid/x:1.2.3"


def test_checksum_annotation_satisfies_the_convention() -> None:
    objects = [dict(o) for o in insecure_objects()]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    fixed = {**deployment, "spec": {**deployment["spec"], "template": dict(deployment["spec"]["template"])}}
    fixed["spec"]["template"]["metadata"] = {
        **fixed["spec"]["template"]["metadata"],
        "annotations": {"checksum/config": "0" * 64},
    }
    assert charts.checksum_violations([o for o in objects if o["kind"] != "Deployment"] + [fixed]) == []
    # Config the chart does not render (e.g. a Secret created by Pulumi) needs no checksum.
    assert charts.checksum_violations([deployment]) == []
