"""HTML a notebook shows for a sweep's results and for an analysis (``_repr_html_``): plain tables, no script.

Every value a user chose (strategy and dataset names, parameter values, sweep names) is escaped: a symbol
such as ``<AAA>`` or a strategy named with ``&`` must show as text, not break or inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qframe.research.backtesting.results import PARAM_PREFIX, get_performance_summary
from qframe.research.reporting.tear_sheet import format_value

if TYPE_CHECKING:
    from qframe.research.backtesting.analytics import PerformanceAnalysis
    from qframe.research.backtesting.results import BacktestResults

PARAMS_COLUMNS = ("best_params", "most_chosen_params")
_STYLE = "border-collapse:collapse;margin:0 1.5em 0.8em 0"
_CELL = "border:1px solid #ccc;padding:2px 8px;text-align:right"


def cell_text(value: Any) -> str:
    """One cell as text (not yet escaped): 4 decimals, whole numbers as ints, parameters as ``name=value``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{str(k).removeprefix(PARAM_PREFIX)}={cell_text(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format_value(value)


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str | None = None) -> str:
    """A ``<table>`` with a header row; every header and cell is escaped."""
    head = "".join(f'<th style="{_CELL}">{html.escape(str(h))}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{html.escape(cell_text(v))}</td>' for v in row) + "</tr>" for row in rows
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table style="{_STYLE}">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def results_html(results: BacktestResults) -> str:
    """How the sweep ran, how each dataset was annualised, and the summary per strategy and dataset."""
    mode = "walk-forward" if results.walk_forward else "grid"
    resumed = f", {results.n_resumed:,} resumed from checkpoints" if results.n_resumed else ""
    head = (
        f"<p><b>Sweep {html.escape(results.sweep_id)}</b>: {len(results.frame):,} rows from {results.n_tasks:,} "
        f"tasks ({results.n_computed:,} computed{resumed}) on {html.escape(results.backend)} in "
        f"{results.elapsed_seconds:.1f} s; {mode}, selected by {html.escape(results.selection_metric)}.</p>"
    )
    annualised = "".join(
        f"<li>{html.escape(str(name))}: {html.escape(frequency.describe())}</li>"
        for name, frequency in sorted(results.frequencies.items())
    )
    notes = f"<ul>{annualised}</ul>" if annualised else ""
    if results.frame.empty:
        return f"<div>{head}{notes}<p>No rows.</p></div>"
    summary = get_performance_summary(results)
    table = html_table(
        list(summary.columns),
        summary.itertuples(index=False, name=None),
        caption="Best per strategy and dataset (every row: .frame; plot: .plot())",
    )
    return f"<div>{head}{notes}{table}</div>"


def analysis_html(analysis: PerformanceAnalysis) -> str:
    """The analysis' metric sections side by side, with the annualisation they use."""
    sections = (
        ("Returns", analysis.basic_metrics),
        ("Risk", analysis.risk_metrics),
        ("Drawdowns", analysis.drawdown_analysis),
    )
    tables = "".join(
        html_table(["metric", "value"], [(name, value) for name, value in figures.items()], caption=title)
        for title, figures in sections
    )
    head = (
        f"<p><b>Performance analysis</b> of {analysis.n_periods:,} periods, annualised with "
        f"{html.escape(analysis.frequency.describe())}.</p>"
    )
    return f'<div>{head}<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{tables}</div></div>'
