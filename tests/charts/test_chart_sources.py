"""The shared parts of the charts stay in one place and every values schema documents itself.

charts/_shared/ is the single source of the qframe.* named templates and of the values-schema
fragments; tools/chartkit copies them into each chart and generates each chart's README values
table. These tests fail when a copy drifts, a schema property has no description, values.yaml and
values.schema.json disagree, or a committed README table is stale. No helm needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import charts
from tools.chartkit import generate, layout, schema
from tools.chartkit.layout import REGENERATE_COMMAND, Layout

pytestmark = pytest.mark.charts

TREE = Layout(charts.REPO_ROOT)
CHART_PARAMS = [pytest.param(chart, id=chart.name) for chart in TREE.charts()]


def _schema(chart: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(layout.values_schema(chart).read_text(encoding="utf-8"))
    return loaded


def _values(chart: Path) -> Any:
    return yaml.safe_load(layout.values_yaml(chart).read_text(encoding="utf-8"))


def test_every_project_chart_is_covered() -> None:
    assert TREE.charts() == charts.discover_charts(charts.REPO_ROOT)
    assert {c.name for c in TREE.charts()} >= {"kafka", "minio", "postgres", "tenant-baseline"}


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_common_templates_are_a_verbatim_copy_of_the_shared_source(chart: Path) -> None:
    copy = layout.common_tpl_copy(chart)
    assert copy.is_file(), f"{copy} is missing: run `{REGENERATE_COMMAND}`"
    assert copy.read_text(encoding="utf-8") == TREE.common_tpl.read_text(encoding="utf-8"), (
        f"{copy} differs from charts/_shared/_common.tpl: edit the shared file, then run `{REGENERATE_COMMAND}`"
    )


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_chart_helpers_do_not_redefine_shared_templates(chart: Path) -> None:
    helpers = (chart / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    assert 'define "qframe.' not in helpers, "qframe.* templates belong in charts/_shared/_common.tpl"
    own = [line for line in helpers.splitlines() if line.startswith('{{- define "')]
    assert all(f'define "{chart.name}.' in line for line in own), own


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_shared_schema_fragments_are_present_unchanged(chart: Path) -> None:
    fragments = generate.shared_fragments(TREE)
    assert {"image", "resources", "podSecurityContext", "labels", "persistence", "initJob"} <= set(fragments)
    assert "networkPolicyClient" in fragments
    defs = _schema(chart).get("$defs") or {}
    drifted = sorted(name for name, fragment in fragments.items() if defs.get(name) != fragment)
    assert drifted == [], f"$defs drifted from charts/_shared/schema/*.json: {drifted}; run `{REGENERATE_COMMAND}`"


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_fullname_override_bound_matches_the_chart_annotation(chart: Path) -> None:
    limit = generate.fullname_max_length(chart)
    assert _schema(chart)["$defs"]["fullnameOverride"] == generate.fullname_override_def(limit)


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_every_schema_property_has_a_description(chart: Path) -> None:
    assert schema.missing_descriptions(_schema(chart)) == []


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_values_yaml_and_schema_agree(chart: Path) -> None:
    assert schema.disagreements(_schema(chart), _values(chart)) == []


@pytest.mark.parametrize("chart", CHART_PARAMS)
def test_readme_values_table_is_up_to_date(chart: Path) -> None:
    expected = generate.expected_files(TREE)[layout.readme(chart)]
    committed = layout.readme(chart)
    assert committed.is_file(), f"{committed} is missing: run `{REGENERATE_COMMAND}`"
    assert committed.read_text(encoding="utf-8") == expected, f"{committed} is out of date: run `{REGENERATE_COMMAND}`"


def test_nothing_generated_is_stale() -> None:
    stale = [str(path.relative_to(TREE.root)) for path in generate.stale_files(TREE)]
    assert stale == [], f"out of date: {stale}; run `{REGENERATE_COMMAND}`"


# ---------------------------------------------------------------------------------------------
# The checks can fail: each one is shown a planted problem.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tree_copy(tmp_path: Path) -> Layout:
    """A copy of charts/ the test may break."""
    shutil.copytree(TREE.charts_dir, tmp_path / "charts")
    return Layout(tmp_path)


def test_a_drifted_common_copy_is_reported_and_regenerated(tree_copy: Layout) -> None:
    copy = layout.common_tpl_copy(tree_copy.charts_dir / "minio")
    copy.write_text(copy.read_text(encoding="utf-8") + "{{/* local edit */}}\n", encoding="utf-8")
    assert generate.stale_files(tree_copy) == [copy]
    assert generate.write_files(tree_copy) == [copy]
    assert generate.stale_files(tree_copy) == []


def test_a_drifted_schema_fragment_is_reported(tree_copy: Layout) -> None:
    path = layout.values_schema(tree_copy.charts_dir / "kafka")
    document = json.loads(path.read_text(encoding="utf-8"))
    document["$defs"]["image"]["properties"]["tag"]["pattern"] = ".*"
    path.write_text(generate.dump_json(document), encoding="utf-8")
    assert path in generate.stale_files(tree_copy)


def test_an_edited_shared_fragment_makes_every_chart_stale(tree_copy: Layout) -> None:
    fragment = tree_copy.schema_fragments_dir / "nonRootId.json"
    fragment.write_text(json.dumps({"description": "changed", "type": "integer", "minimum": 2}), encoding="utf-8")
    stale = set(generate.stale_files(tree_copy))
    assert {layout.values_schema(chart) for chart in tree_copy.charts()} <= stale


def test_a_stale_readme_is_reported(tree_copy: Layout) -> None:
    values = layout.values_yaml(tree_copy.charts_dir / "postgres")
    values.write_text(values.read_text(encoding="utf-8").replace("size: 5Gi", "size: 7Gi"), encoding="utf-8")
    assert generate.stale_files(tree_copy) == [layout.readme(tree_copy.charts_dir / "postgres")]


def test_a_chart_without_the_fullname_annotation_is_refused(tree_copy: Layout) -> None:
    chart_yaml = tree_copy.charts_dir / "minio" / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text(encoding="utf-8"))
    del meta["annotations"]
    chart_yaml.write_text(yaml.safe_dump(meta), encoding="utf-8")
    with pytest.raises(ValueError, match=r"qframe\.io/fullname-max-length"):
        generate.expected_files(tree_copy)


SMALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"description": "d", "$ref": "#/$defs/image"},
        "labels": {"description": "d", "$ref": "#/$defs/labels"},
        "items": {
            "description": "d",
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"description": "d", "type": "string"}}},
        },
    },
    "$defs": {
        "image": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"tag": {"type": "string"}, "digest": {"description": "d", "type": "string"}},
            "required": ["tag"],
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def test_a_property_without_description_is_reported_with_its_pointer() -> None:
    assert schema.missing_descriptions(SMALL_SCHEMA) == ["#/$defs/image/properties/tag"]


def test_a_values_key_missing_from_the_schema_is_reported() -> None:
    values = {"image": {"tag": "1", "tga": "x"}, "labels": {"free": "form"}, "items": [{"name": "a", "nmae": "b"}]}
    assert schema.keys_missing_from_schema(SMALL_SCHEMA, values) == [
        "image.tga is in values.yaml but not in values.schema.json",
        "items.[0].nmae is in values.yaml but not in values.schema.json",
    ]


def test_a_required_or_top_level_property_missing_from_values_is_reported() -> None:
    values = {"image": {"digest": ""}}
    assert schema.properties_missing_from_values(SMALL_SCHEMA, values) == [
        "image.tag is in values.schema.json but not in values.yaml",
        "labels is in values.schema.json but not in values.yaml",
        "items is in values.schema.json but not in values.yaml",
    ]
    # An optional nested property (digest) may be left out.
    complete = {"image": {"tag": "1"}, "labels": {}, "items": []}
    assert schema.disagreements(SMALL_SCHEMA, complete) == []
