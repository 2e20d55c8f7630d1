"""Validates rendered Kubernetes objects against the API's JSON schemas (kubernetes-validate).

The strict schemas are used: an unknown field (a typo such as `imagePullPolicey`, or a field that
moved between API versions) is an error, as `kubectl apply --validate=strict` would make it. Every
error is reported, not only the first, each as `<Kind>/<name>: <path>: <message>`.

Custom resources have no schema in kubernetes-validate. They are never passed silently: an object
whose apiVersion/kind has no schema yields "no schema for <apiVersion>/<kind>" unless the caller
allowlists it (e.g. the RayCluster CRD once the KubeRay chart ships it).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # (no inline types; kubernetes-validate depends on it)
from referencing import Registry, Resource

SCHEMA_PACKAGE = "kubernetes_validate"
SCHEMA_ROOT = "kubernetes-json-schema"
_SCHEMA_DIR = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)-local-strict$")


def _version_key(version: str) -> tuple[int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"{version!r} is not a Kubernetes version (expected e.g. 1.34.2)")
    return int(match[1]), int(match[2])


@functools.cache
def _strict_schema_dirs() -> dict[tuple[int, int], str]:
    root = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_ROOT)
    dirs: dict[tuple[int, int], str] = {}
    for entry in root.iterdir():
        match = _SCHEMA_DIR.match(entry.name)
        if match:
            dirs[int(match["major"]), int(match["minor"])] = entry.name
    return dirs


def schema_dir_for(kube_version: str) -> str:
    """The strict schema directory for a Kubernetes version: its minor's, or the newest older one.

    Raises ValueError when the version is outside what kubernetes-validate knows: validating against
    another minor's schemas would accept fields the pinned version rejects, or the reverse.
    """
    wanted = _version_key(kube_version)
    known = _strict_schema_dirs()
    if not known:
        raise ValueError(f"kubernetes-validate ships no strict schemas (asked for {kube_version})")
    oldest, newest = min(known), max(known)
    candidates = [v for v in known if v <= wanted]
    if not candidates or wanted > newest:
        raise ValueError(
            f"kubernetes-validate has no schemas for Kubernetes {kube_version} (it knows "
            f"{oldest[0]}.{oldest[1]} to {newest[0]}.{newest[1]}); upgrade kubernetes-validate "
            "or the pin in tools/versions.env"
        )
    return known[max(candidates)]


@functools.cache
def _load(schema_dir: str, filename: str) -> Any:
    path = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_ROOT, schema_dir, filename)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _schema_filename(api_version: str, kind: str) -> str:
    # kubernetes-validate's file naming: apps/v1 Deployment -> deployment-apps-v1.json,
    # networking.k8s.io/v1 NetworkPolicy -> networkpolicy-networking-v1.json, v1 Pod -> pod-v1.json.
    group, _, version = api_version.rpartition("/")
    short_group = group.split(".", 1)[0]
    suffix = f"{short_group}-{version}" if group else version
    return f"{kind.lower()}-{suffix}.json"


def _matches_gvk(schema: Mapping[str, Any], api_version: str, kind: str) -> bool:
    # The file name drops the group's domain, so apps.example.com/v1 would map onto apps/v1;
    # the schema's own group-version-kind list decides whether it really describes this object.
    group, _, version = api_version.rpartition("/")
    return any(
        gvk.get("group", "") == group and gvk.get("version") == version and gvk.get("kind") == kind
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    )


@functools.cache
def _validator(schema_dir: str, api_version: str, kind: str) -> Any:
    schema = _load(schema_dir, _schema_filename(api_version, kind))
    if schema is None or not _matches_gvk(schema, api_version, kind):
        return None
    definitions = _load(schema_dir, "_definitions.json")
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"{obj.get('kind', '<no kind>')}/{name or '<no name>'}"


def _path(error: Any) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<root>"


def schema_errors(obj: Mapping[str, Any], kube_version: str, allowed_crds: Collection[str] = ()) -> list[str]:
    """Schema errors of one object for a Kubernetes version ([] when valid).

    `allowed_crds` holds "<apiVersion>/<kind>" strings (e.g. "ray.io/v1/RayCluster") of custom
    resources that are expected to have no built-in schema; those are only checked for the fields
    every object needs.
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        return [f"{_ref(obj)}: apiVersion and kind must be non-empty strings"]
    validator = _validator(schema_dir_for(kube_version), api_version, kind)
    if validator is None:
        if f"{api_version}/{kind}" not in allowed_crds:
            return [f"{_ref(obj)}: no schema for {api_version}/{kind} (Kubernetes {kube_version})"]
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
            return [f"{_ref(obj)}: metadata.name is missing"]
        return []
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda e: (_path(e), str(e.message)))
    return [f"{_ref(obj)}: {_path(e)}: {e.message}" for e in errors]
