"""Rows out as a rich table (people) or JSON (scripts): every command prints through here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table


class Output(StrEnum):
    table = "table"
    json = "json"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str = "") -> Table:
    """A rich table of ``rows``; a cell may carry rich markup only through ``style_of``."""
    grid = Table(title=title or None, title_justify="left", show_lines=False)
    for column in columns:
        grid.add_column(column.upper().replace("_", " "), overflow="fold")
    for row in rows:
        grid.add_row(*[_cell(row.get(column)) for column in columns])
    return grid


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def emit(
    console: Console,
    output: Output,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str = "",
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Prints rows; in JSON mode as ``{"items": rows, **extra}`` so scripts get one document."""
    if output is Output.json:
        document: dict[str, Any] = {"items": [dict(r) for r in rows]}
        document.update(extra or {})
        console.print_json(json.dumps(document, default=str))
        return
    console.print(table(rows, columns, title=title))
