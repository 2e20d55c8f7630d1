"""The files the generator owns, computed from the shared sources and each chart's own files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import layout
from .layout import FULLNAME_MAX_LENGTH_ANNOTATION, Layout
from .readme import render_readme

# Chart-derived (not shared) definitions the generator also writes.
DERIVED_DEFS = ("fullnameOverride",)


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def shared_fragments(tree: Layout) -> dict[str, Any]:
    """{name: fragment} from charts/_shared/schema/<name>.json, sorted by name."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(tree.schema_fragments_dir.glob("*.json"))
    }


def fullname_max_length(chart: Path) -> int:
    """The chart's qframe.io/fullname-max-length annotation (the longest object-name prefix)."""
    meta = load_yaml(chart / "Chart.yaml") or {}
    raw = (meta.get("annotations") or {}).get(FULLNAME_MAX_LENGTH_ANNOTATION)
    if raw is None or not str(raw).isdigit() or not 2 <= int(raw) <= 63:
        raise ValueError(
            f"{chart.name}/Chart.yaml: annotation {FULLNAME_MAX_LENGTH_ANNOTATION} must be a number from 2 to 63 "
            f"(63 minus the chart's longest object-name suffix), is {raw!r}"
        )
    return int(raw)


def fullname_override_def(max_length: int) -> dict[str, Any]:
    return {
        "description": (
            f"Empty, or a DNS label of at most {max_length} characters, so the chart's longest object-name "
            "suffix still fits in 63."
        ),
        "type": "string",
        "pattern": f"^([a-z0-9]([-a-z0-9]{{0,{max_length - 2}}}[a-z0-9])?)?$",
    }


def with_shared_defs(schema: Mapping[str, Any], chart: Path, fragments: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's schema with its `$defs` holding, after its own definitions, the derived
    fullnameOverride and every shared fragment (present in every chart, used or not)."""
    own = {
        name: node
        for name, node in (schema.get("$defs") or {}).items()
        if name not in fragments and name not in DERIVED_DEFS
    }
    defs = {**own, "fullnameOverride": fullname_override_def(fullname_max_length(chart)), **fragments}
    return {**{k: v for k, v in schema.items() if k != "$defs"}, "$defs": defs}


def expected_files(tree: Layout) -> dict[Path, str]:
    """Every generated file and the text it must have."""
    common = tree.common_tpl.read_text(encoding="utf-8")
    fragments = shared_fragments(tree)
    files: dict[Path, str] = {}
    for chart in tree.charts():
        files[layout.common_tpl_copy(chart)] = common
        schema_path = layout.values_schema(chart)
        schema = with_shared_defs(json.loads(schema_path.read_text(encoding="utf-8")), chart, fragments)
        files[schema_path] = dump_json(schema)
        values = load_yaml(layout.values_yaml(chart)) or {}
        design = chart / "DESIGN.md"
        notes = design.read_text(encoding="utf-8") if design.is_file() else ""
        files[layout.readme(chart)] = render_readme(load_yaml(chart / "Chart.yaml") or {}, schema, values, notes)
    return files


def stale_files(tree: Layout) -> list[Path]:
    """Generated files whose committed text differs from what the generator would write."""
    return [
        path
        for path, text in expected_files(tree).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def write_files(tree: Layout) -> list[Path]:
    """Writes every stale generated file; returns the ones it changed."""
    changed: list[Path] = []
    for path, text in expected_files(tree).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
