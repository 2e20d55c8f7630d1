"""Tables a researcher reads in full: nothing is cut to "…", and the same rows as JSON or CSV for tools.

Rich's default overflow ellipsises a cell that does not fit its column, which cut the one thing a summary is
read for (``lookback_long=10…``). Cells fold onto further lines instead, and each parameter gets its own line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich.table import Table
from rich.text import Text


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def plain_params(value: object, prefix: str) -> dict[str, object]:
    """``{'param_fast': 10.0}`` -> ``{'fast': 10}``: the names a user types, whole numbers as integers."""
    if not isinstance(value, Mapping):
        return {}
    plain: dict[str, object] = {}
    for key, raw in value.items():
        number = raw.item() if hasattr(raw, "item") else raw
        if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
            number = int(number)
        plain[str(key).removeprefix(prefix)] = number
    return plain


def folding_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> Table:
    """A rich table whose cells wrap (fold) instead of ending in "…": on a narrow terminal a value continues on
    the next line of its cell, on a wide one every line of a cell is whole."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # values are data: '[1]' in a symbol is not markup
    return table


def render_records(records: Sequence[Mapping[str, Any]], output: OutputFormat) -> str:
    """JSON (a list of objects) or CSV (nested mappings become ``<key>.<name>`` columns) of the same rows."""
    if output is OutputFormat.json:
        return json.dumps(list(records), indent=2, default=str)
    flat = [_flatten(record) for record in records]
    columns: list[str] = []
    for record in flat:
        columns.extend(key for key in record if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            flat[key] = value
    return flat
