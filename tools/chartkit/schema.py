"""Walks a chart's values.schema.json: its properties, their descriptions, and how values.yaml
must agree with it.

The agreement rule (z2jh's check, both directions; charts/README.md states it):
  1. every key in values.yaml is a property of the schema at that place (free-form maps such as
     labels excepted: their keys are data);
  2. every top-level property, and every property its parent object lists in `required`, appears in
     values.yaml (recursively, below objects that appear). Optional nested properties, such as an
     extra resource name or a quota entry, may be left out. Properties of array items are checked by
     direction 1 only, since an empty list is a valid default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

JsonNode = Mapping[str, Any]


def resolve(node: JsonNode, root: JsonNode) -> JsonNode:
    """The node a `$ref` chain ("#/..." pointers only) ends at."""
    seen: set[str] = set()
    while isinstance(node.get("$ref"), str):
        ref = str(node["$ref"])
        if not ref.startswith("#/") or ref in seen:
            raise ValueError(f"unsupported or circular $ref {ref!r}")
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def ref_name(node: JsonNode) -> str | None:
    """The definition name a node refers to ("#/$defs/quantity" -> "quantity"), if any."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        return ref.rsplit("/", 1)[-1]
    for member in node.get("allOf") or []:
        name = ref_name(member)
        if name:
            return name
    return None


def is_free_form_map(node: JsonNode, root: JsonNode) -> bool:
    """An object whose keys are data (labels): additionalProperties is a schema, not false."""
    node = resolve(node, root)
    if isinstance(node.get("additionalProperties"), Mapping):
        return True
    return any(is_free_form_map(member, root) for member in node.get("allOf") or [])


def child_properties(node: JsonNode, root: JsonNode) -> Mapping[str, JsonNode]:
    properties = resolve(node, root).get("properties")
    return properties if isinstance(properties, Mapping) else {}


@dataclass(frozen=True)
class Property:
    """One schema property: its dotted path ("[]" marks array items), the node as written (with its
    description) and whether its parent requires it."""

    path: tuple[str, ...]
    node: JsonNode
    required: bool

    @property
    def key(self) -> str:
        return ".".join(self.path).replace(".[]", "[]")


def iter_properties(schema: JsonNode) -> Iterator[Property]:
    """Every property reachable from the root through objects and array items, depth first."""

    def walk(node: JsonNode, path: tuple[str, ...]) -> Iterator[Property]:
        resolved = resolve(node, schema)
        required = set(resolved.get("required") or [])
        for key, child in child_properties(resolved, schema).items():
            yield Property((*path, key), child, key in required)
            yield from walk(child, (*path, key))
        items = resolved.get("items")
        if isinstance(items, Mapping):
            yield from walk(items, (*path, "[]"))

    yield from walk(schema, ())


# Subschemas that only constrain properties declared elsewhere (e.g. "tag empty -> digest set");
# their `properties` are conditions, not declarations, so they need no description.
_CONSTRAINT_KEYWORDS = frozenset({"if", "then", "else", "not"})


def missing_descriptions(schema: JsonNode) -> list[str]:
    """JSON pointers of every property, anywhere in the document ($defs included), written without
    a description."""
    found: list[str] = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, Mapping):
            properties = node.get("properties")
            if isinstance(properties, Mapping):
                for key, child in properties.items():
                    is_described = isinstance(child, Mapping) and str(child.get("description") or "").strip()
                    if not is_described:
                        found.append(f"{pointer}/properties/{key}")
            for key, child in node.items():
                if key not in _CONSTRAINT_KEYWORDS:
                    walk(child, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{pointer}/{index}")

    walk(schema, "#")
    return found


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "<root>"


def keys_missing_from_schema(schema: JsonNode, values: Any) -> list[str]:
    """Direction 1: values.yaml keys that are not schema properties at their place."""
    found: list[str] = []

    def walk(node: JsonNode, value: Any, path: tuple[str, ...]) -> None:
        if is_free_form_map(node, schema):
            return
        resolved = resolve(node, schema)
        if isinstance(value, Mapping):
            properties = child_properties(resolved, schema)
            for key, child_value in value.items():
                if key not in properties:
                    found.append(f"{_dotted((*path, str(key)))} is in values.yaml but not in values.schema.json")
                else:
                    walk(properties[key], child_value, (*path, str(key)))
        elif isinstance(value, list) and isinstance(resolved.get("items"), Mapping):
            for index, item in enumerate(value):
                walk(resolved["items"], item, (*path, f"[{index}]"))

    walk(schema, values, ())
    return found


def properties_missing_from_values(schema: JsonNode, values: Any) -> list[str]:
    """Direction 2: top-level and required properties that values.yaml leaves out."""
    found: list[str] = []

    def walk(node: JsonNode, value: Mapping[str, Any], path: tuple[str, ...]) -> None:
        if is_free_form_map(node, schema):
            return
        resolved = resolve(node, schema)
        required = set(resolved.get("required") or [])
        for key, child in child_properties(resolved, schema).items():
            expected = not path or key in required
            if key not in value:
                if expected:
                    found.append(f"{_dotted((*path, key))} is in values.schema.json but not in values.yaml")
                continue
            if isinstance(value[key], Mapping):
                walk(child, value[key], (*path, key))

    if isinstance(values, Mapping):
        walk(schema, values, ())
    return found


def disagreements(schema: JsonNode, values: Any) -> list[str]:
    """Both directions of the agreement rule."""
    return keys_missing_from_schema(schema, values) + properties_missing_from_values(schema, values)
