"""`qframe strategies`: what can be swept, with each parameter's kind, default, range and meaning.

Read from the registry's ``ParamSpec`` declarations, so a strategy added in a plugin module shows up too and the
listing cannot drift from what ``--grid`` accepts.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any

import typer
from qframe.research.cli._common import console, plain_errors
from qframe.research.cli.tables import OutputFormat, folding_table, render_records


def strategy_records() -> list[dict[str, Any]]:
    """One record per (strategy, parameter), in registry order."""
    from qframe.research.backtesting.strategies import available_strategies, get_strategy

    records = []
    for name in available_strategies():
        cls = get_strategy(name)
        summary = (inspect.getdoc(cls) or "").split("\n", 1)[0]
        for param, spec in cls.parameters.items():
            records.append(
                {
                    "strategy": name,
                    "parameter": param,
                    "kind": spec.kind.__name__,
                    "default": spec.default,
                    "minimum": spec.minimum,
                    "maximum": spec.maximum,
                    "lookback": spec.lookback,
                    "help": spec.help,
                    "strategy_summary": summary,
                }
            )
    return records


def _range(minimum: object, maximum: object) -> str:
    low = "-inf" if minimum is None else str(minimum)
    high = "inf" if maximum is None else str(maximum)
    return f"{low} .. {high}"


def strategies(
    output: Annotated[OutputFormat, typer.Option(help="table, or json/csv on stdout for other tools")] = (
        OutputFormat.table
    ),
) -> None:
    """The registered strategies and their parameters (kind, default, allowed range), for --strategy and --grid."""
    with plain_errors():
        records = strategy_records()
        if output is not OutputFormat.table:
            sys.stdout.write(render_records(records, output).rstrip("\n") + "\n")
            return
        rows = [
            [
                r["strategy"],
                r["parameter"],
                r["kind"],
                str(r["default"]),
                _range(r["minimum"], r["maximum"]),
                r["help"] + (" (bars of history)" if r["lookback"] else ""),
            ]
            for r in records
        ]
        headers = ["strategy", "parameter", "kind", "default", "range", "meaning"]
        console.print(folding_table(headers, rows, title="strategies (sweep with -g strategy.parameter=values)"))
