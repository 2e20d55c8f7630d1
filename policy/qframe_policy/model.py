"""What every rule receives and returns, and the accessors that tolerate missing or odd shapes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class Resource:
    """One resource as the engine hands it to an analyzer: type token, logical name, input properties.

    ``dependencies`` maps a property to the URNs its value came from (the engine's property
    dependencies); stack rules use it to tie a bucket's companion resources to the bucket when the
    name alone is not known.
    """

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)


class Environment(Enum):
    """The stack's ``qframe-research:environment``; UNKNOWN is judged like production."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Context:
    """What a rule may know beyond the resource itself."""

    environment: Environment = Environment.UNKNOWN


@dataclass(frozen=True)
class Finding:
    """A stack rule's violation: the resource it is about and the message."""

    urn: str
    message: str


ResourceCheck = Callable[[Resource, Context], list[str]]
StackCheck = Callable[[Sequence[Resource], Context], list[Finding]]


@dataclass(frozen=True)
class Rule:
    """One mandatory policy: its name (what CLI output and fixtures use), what it refuses, its check.

    A resource rule has ``types`` (the type tokens it judges) and ``check``; a stack rule has
    ``stack_check`` and sees every resource of the stack at once.
    """

    name: str
    description: str
    types: frozenset[str] = frozenset()
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    # True for rules whose verdict depends on Context.environment (they take it as policy config).
    uses_environment: bool = False

    def __post_init__(self) -> None:
        if (self.check is None) == (self.stack_check is None):
            raise ValueError(f"rule {self.name!r}: give exactly one of check (with types) or stack_check")
        if self.check is not None and not self.types:
            raise ValueError(f"rule {self.name!r}: a resource rule needs the type tokens it judges")

    def run(self, resources: Sequence[Resource], context: Context) -> list[Finding]:
        """The rule over a set of resources (the way tests and the stack-wide run call it)."""
        if self.stack_check is not None:
            return self.stack_check(resources, context)
        if self.check is None:  # __post_init__ guarantees one of the two
            raise AssertionError(self.name)
        return [
            Finding(resource.urn, message)
            for resource in resources
            if resource.type in self.types
            for message in self.check(resource, context)
        ]


def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> Sequence[Any]:
    """A list, or a scalar as a one-element list (IAM lets Action/Resource be either)."""
    if isinstance(value, str | bytes) or value is None:
        return [value] if value is not None else []
    return value if isinstance(value, Sequence) else [value]


def dig(value: object, *path: str) -> Any:
    current: Any = value
    for key in path:
        current = as_map(current).get(key)
    return current


def policy_document(value: object) -> Mapping[str, Any] | None:
    """A policy document given as JSON text or as a mapping; None when it is neither."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return value if isinstance(value, Mapping) else None


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [as_map(s) for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]
