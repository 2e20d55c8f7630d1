"""Reading ``Pulumi.<stack>.yaml`` strictly: what PyYAML lets through silently is refused here.

PyYAML keeps the last of two equal keys (a setting written twice silently loses one), and its
errors, like a ``config:`` that is a list or an encrypted value in a key the program reads, used to
surface as tracebacks. Every such problem becomes a line of the same message the config model
writes, naming the key (or the line and column) and how to fix it, before anything is deployed.
Used by the offline program runs (tests, ``make plan``) and by the devstack before ``pulumi up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.config import PROJECT, StackConfigError, foreign_key_problem, problems_message


def read_stack_file(path: Path, *, stack: str) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, as written (values not yet flattened to text)."""
    text = path.read_text(encoding="utf-8")
    root = _compose(text, stack)
    if root is None:
        return {}
    problems = _duplicate_keys(root, ())
    if problems:
        raise StackConfigError(problems_message(problems, stack=stack))
    config = (yaml.safe_load(text) or {}).get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackConfigError(
            problems_message(
                [
                    f"  - config = {_brief(config)}: must be a mapping of <namespace>:<key> to values "
                    f"(e.g. config: {{{PROJECT}:namespace: qframe}}), not a {type(config).__name__}"
                ],
                stack=stack,
            )
        )
    problems = [problem for key, value in config.items() if (problem := _key_problem(key, value)) is not None]
    if problems:
        raise StackConfigError(problems_message(problems, stack=stack))
    return config


def _compose(text: str, stack: str) -> yaml.MappingNode | None:
    """The document's node tree; a syntax error, a second document or a non-mapping is a problem."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "the file"
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        detail = ", ".join(part for part in (context, exc.problem) if part)
        problem = f"  - {where}: is not valid YAML ({detail}); fix the syntax there"
        raise StackConfigError(problems_message([problem], stack=stack)) from None
    if len(documents) > 1:
        line = documents[1].start_mark.line + 1
        problem = f"  - line {line}, column 1: starts a second YAML document; a stack file is one document"
        raise StackConfigError(problems_message([problem], stack=stack))
    root = documents[0] if documents else None
    if root is not None and not isinstance(root, yaml.MappingNode):
        problem = f"  - line {root.start_mark.line + 1}, column 1: the file must be a mapping with a config: key"
        raise StackConfigError(problems_message([problem], stack=stack))
    return root


def _key_problem(key: Any, value: Any) -> str | None:
    if not isinstance(key, str):
        return f"  - config.{key!r}: keys must be text such as {PROJECT}:namespace"
    if key.partition(":")[0] != PROJECT:
        return foreign_key_problem(key)
    if isinstance(value, dict) and "secure" in value and len(value) == 1:
        return (
            f"  - {key}: is an encrypted (secure:) value, but no {PROJECT} key takes a secret: every "
            "password is generated into a Kubernetes Secret; write the plain value"
        )
    return None


def _duplicate_keys(node: yaml.Node, path: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    f"  - {_key_path((*path, key))}: is given twice (lines {seen[key]} and {line}); YAML "
                    "would silently keep only the last one: keep one"
                )
            else:
                seen[key] = line
            problems += _duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, f"[{index}]"))
    return problems


def _key_path(path: tuple[str, ...]) -> str:
    """("config", "qframe-research:kafka", "replicas") -> "qframe-research:kafka.replicas"."""
    parts = path[1:] if path[:1] == ("config",) and len(path) > 1 else path
    text = ""
    for part in parts:
        text += part if part.startswith("[") or not text else f".{part}"
    return text


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
