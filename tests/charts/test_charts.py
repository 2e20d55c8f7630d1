"""Every chart in charts/ under the real, pinned helm: lint, render, schemas, security, conventions.

Tests are generated per chart and per values scenario (the defaults plus each ci/*-values.yaml), so a
new chart or scenario is covered by adding files, not tests.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import charts, k8s_schema, security

pytestmark = pytest.mark.charts

CHARTS = charts.discover_charts(charts.REPO_ROOT)
CASES = [
    pytest.param(chart, values, id=f"{chart.name}-{values.stem if values else 'defaults'}")
    for chart in CHARTS
    for values in [None, *charts.ci_values_files(chart)]
]
CHART_PARAMS = [pytest.param(chart, id=chart.name) for chart in CHARTS]


@functools.cache
def rendered(chart: Path, values: Path | None) -> tuple[dict[str, Any], ...]:
    return tuple(charts.render(chart, values))


def test_charts_are_discovered() -> None:
    assert CHARTS, "no charts/*/Chart.yaml found; the harness would test nothing"
    assert charts.REPO_ROOT / "charts" / "tenant-baseline" in CHARTS


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_chart_conventions(chart: Path) -> None:
    assert charts.chart_convention_violations(chart) == []


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_chart_has_ci_scenarios(chart: Path) -> None:
    assert charts.ci_values_files(chart), f"{chart.name}: add at least one ci/<scenario>-values.yaml"


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_lint_strict(chart: Path) -> None:
    charts.lint(chart)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_renders_objects(chart: Path, values: Path | None) -> None:
    objects = rendered(chart, values)
    assert objects, f"{chart.name} rendered no objects"
    for obj in objects:
        assert obj.get("apiVersion"), obj
        assert obj.get("kind"), obj
        assert obj.get("metadata", {}).get("name"), obj


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_objects_match_kubernetes_schemas(chart: Path, values: Path | None) -> None:
    errors = [e for obj in rendered(chart, values) for e in k8s_schema.schema_errors(obj, charts.pinned_kube_version())]
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_objects_follow_security_rules(chart: Path, values: Path | None) -> None:
    found = [v for obj in rendered(chart, values) for v in security.violations(obj)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_namespace_rules(chart: Path, values: Path | None) -> None:
    found = security.namespace_violations(list(rendered(chart, values)), charts.DEFAULT_NAMESPACE)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_pods_roll_when_mounted_config_changes(chart: Path, values: Path | None) -> None:
    found = charts.checksum_violations(rendered(chart, values))
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("chart", "values"), CASES)
def test_objects_stay_in_the_release_namespace(chart: Path, values: Path | None) -> None:
    stray = [
        security.object_ref(o)
        for o in rendered(chart, values)
        if o.get("metadata", {}).get("namespace") not in (None, charts.DEFAULT_NAMESPACE)
    ]
    assert stray == [], "objects must not hard-code a namespace other than the release's"


# ---------------------------------------------------------------------------------------------
# values.schema.json is enforced by helm
# ---------------------------------------------------------------------------------------------


def _schema(chart: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
    return loaded


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return _resolve(target, root)
    return node


def _scalar_leaves(
    node: Mapping[str, Any], root: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, type) of every property the schema types as a single scalar."""
    node = _resolve(node, root)
    kind = node.get("type")
    if kind in ("string", "boolean", "integer", "number") and path:
        yield path, kind
    for key, child in (node.get("properties") or {}).items():
        yield from _scalar_leaves(child, root, (*path, key))


_WRONG_VALUE = {"string": 12345, "boolean": "not-a-boolean", "integer": "not-an-integer", "number": "not-a-number"}


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        nested = {key: nested}
    return nested


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_values_schema_closes_top_level(chart: Path) -> None:
    assert _schema(chart).get("additionalProperties") is False


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_helm_rejects_unknown_top_level_key(chart: Path, tmp_path: Path) -> None:
    values = tmp_path / "unknown-values.yaml"
    values.write_text(yaml.safe_dump({"surelyNotAValuesKey": True}), encoding="utf-8")
    proc = charts.helm(
        "template", "t", chart, "--kube-version", charts.pinned_kube_version(), "--values", values, check=False
    )
    assert proc.returncode != 0, "helm accepted an unknown top-level key"
    assert "surelyNotAValuesKey" in proc.stderr


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_helm_rejects_wrong_typed_value(chart: Path, tmp_path: Path) -> None:
    schema = _schema(chart)
    leaves = list(_scalar_leaves(schema, schema))
    assert leaves, f"{chart.name}: values.schema.json types no scalar value"
    path, kind = leaves[0]
    values = tmp_path / "wrong-type-values.yaml"
    values.write_text(yaml.safe_dump(_nest(path, _WRONG_VALUE[kind])), encoding="utf-8")
    proc = charts.helm(
        "template", "t", chart, "--kube-version", charts.pinned_kube_version(), "--values", values, check=False
    )
    assert proc.returncode != 0, f"helm accepted a wrong type for {'.'.join(path)}"
    assert "/".join(path) in proc.stderr, proc.stderr
