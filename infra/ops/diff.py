"""What differs between the objects a stack renders and the objects live in the cluster (pure).

Only fields the chart renders are compared: the API server adds defaults, status and bookkeeping
that are not drift. Quantities are compared by value (``0.5`` and ``500m`` are one CPU request),
Secret contents are never compared or printed, and helm hooks (Jobs that run and go) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.quantities import parse_quantity

HOOK_ANNOTATION = "helm.sh/hook"
_SECRET_FIELDS = ("data", "stringData")


@dataclass(frozen=True)
class Change:
    path: str
    rendered: Any
    live: Any


@dataclass
class ObjectDiff:
    release: str
    kind: str
    name: str
    state: str
    """``in sync``, ``changed``, ``missing`` (rendered, not in the cluster) or ``not compared``."""
    changes: list[Change] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def drifted(self) -> bool:
        return self.state in ("changed", "missing")


def is_hook(obj: Mapping[str, Any]) -> bool:
    return HOOK_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


def _empty(value: Any) -> bool:
    """Nothing the API server would keep: None, {}, [] or a mapping of only such values."""
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None or value == []


def _same_scalar(path: str, rendered: Any, live: Any) -> bool:
    if rendered == live:
        return True
    if isinstance(rendered, bool) or isinstance(live, bool):
        return False
    if str(rendered) == str(live):
        return True
    if any(part in path for part in ("resources", "storage", "sizeLimit", "capacity", "limits", "requests")):
        try:
            return parse_quantity(str(rendered)) == parse_quantity(str(live))
        except ValueError:
            return False
    return False


def _compare(rendered: Any, live: Any, path: str, out: list[Change]) -> None:
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            if not (_empty(rendered) and live is None):
                out.append(Change(path, rendered, live))
            return
        for key, value in rendered.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in live:
                if not _empty(value):
                    out.append(Change(child, value, None))
                continue
            _compare(value, live[key], child, out)
        return
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            if not (_empty(rendered) and live is None):
                out.append(Change(path, rendered, live))
            return
        for index, (r, v) in enumerate(zip(rendered, live, strict=True)):
            _compare(r, v, f"{path}[{index}]", out)
        return
    if not _same_scalar(path, rendered, live):
        out.append(Change(path, rendered, live))


def object_changes(rendered: Mapping[str, Any], live: Mapping[str, Any]) -> list[Change]:
    """Fields of ``rendered`` whose live value differs (Secret data excluded)."""
    body = {k: v for k, v in rendered.items() if k not in ("apiVersion", "status")}
    if rendered.get("kind") == "Secret":
        body = {k: v for k, v in body.items() if k not in _SECRET_FIELDS}
    meta = dict(body.get("metadata") or {})
    # helm sets the namespace from --namespace; the rendered object may or may not carry it.
    meta.pop("namespace", None)
    body["metadata"] = meta
    out: list[Change] = []
    _compare(body, live, "", out)
    return out


def diff_release(
    release: str,
    rendered: list[dict[str, Any]],
    fetch: Callable[[str, str], dict[str, Any] | None],
    supported: Callable[[str], bool],
) -> list[ObjectDiff]:
    """One entry per rendered object; ``fetch(kind, name)`` reads it live (None when absent)."""
    results = []
    for obj in rendered:
        kind = str(obj.get("kind"))
        name = str((obj.get("metadata") or {}).get("name"))
        if is_hook(obj):
            continue
        if not supported(kind):
            results.append(ObjectDiff(release, kind, name, "not compared"))
            continue
        live = fetch(kind, name)
        if live is None:
            results.append(ObjectDiff(release, kind, name, "missing"))
            continue
        changes = object_changes(obj, live)
        results.append(ObjectDiff(release, kind, name, "changed" if changes else "in sync", changes))
    return results


def short(value: Any, limit: int = 60) -> str:
    text = "<absent>" if value is None else (value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
