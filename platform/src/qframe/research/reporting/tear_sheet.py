"""Tear sheet of one strategy on one symbol: the picture (see :mod:`.tear_sheet_figure`) as PNG, and HTML.

The HTML embeds that PNG as base64 next to the metric tables and the monthly returns: one self-contained file
with no script or stylesheet to fetch, so it opens on an air-gapped cluster.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from matplotlib.figure import Figure
from qframe.research.atomic_files import atomic_write_bytes
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer, PerformanceAnalysis
from qframe.research.backtesting.results import PARAM_PREFIX
from qframe.research.reporting.monthly_returns import format_percent_cell, monthly_returns_table
from qframe.research.reporting.rolling_window import RollingWindow, rolling_window_for
from qframe.research.reporting.tear_sheet_figure import SheetContext, describe_params, tear_sheet_figure

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TearSheet:
    png_path: Path
    html_path: Path
    analysis: PerformanceAnalysis
    heatmap: pd.DataFrame | None = None
    # What was drawn, for a notebook to show again and for tests to read back (labels, titles, lines).
    figure: Figure | None = field(default=None, repr=False)
    monthly_returns: pd.DataFrame | None = None
    rolling_window: RollingWindow | None = None


def sheet_title(strategy: str, context: SheetContext, *, metric: str, best_params: Mapping[str, Any] | None) -> str:
    """E.g. ``ma_crossover on AAA (bars.demo-1h@v1): best by sharpe fast=10, slow=50``; walk-forward says so."""
    where = context.source()
    head = f"{strategy} on {where}" if where else strategy
    if context.walk_forward:
        return (
            f"{head}: walk-forward out-of-sample, {len(context.splits)} test windows chained, each with the "
            f"parameters chosen by {metric} on its own train window"
        )
    chosen = f" {describe_params(best_params)}" if best_params else ""
    return f"{head}: best by {metric}{chosen}"


def format_value(value: Any) -> str:
    """How every number appears in the HTML (and how tests look for it): 4 decimals, ints as ints."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{float(value):.4f}"
    if isinstance(value, pd.Timedelta):
        return str(value)
    if value is None:
        return "n/a"
    return str(value)


def _param_column(results: pd.DataFrame, name: str) -> str:
    for candidate in (name, f"{PARAM_PREFIX}{name}"):
        if candidate in results.columns:
            return candidate
    params = sorted(c.removeprefix(PARAM_PREFIX) for c in results.columns if str(c).startswith(PARAM_PREFIX))
    raise ValueError(f"parameter {name!r} is not a column of the results table; parameters available: {params}")


def heatmap_pivot(
    results: pd.DataFrame, params: tuple[str, str], *, metric: str = "sharpe", aggfunc: str = "mean"
) -> pd.DataFrame:
    """Metric over two parameters (rows = first, columns = second); other parameters/splits are aggregated.

    Parameter names may be given bare (``fast``) or as result columns (``param_fast``).
    """
    if metric not in results.columns:
        raise ValueError(f"metric {metric!r} is not a column of the results table; columns: {list(results.columns)}")
    row, col = (_param_column(results, p) for p in params)
    if row == col:
        raise ValueError(f"heat map needs two different parameters, got {params}")
    pivot = results.pivot_table(index=row, columns=col, values=metric, aggfunc=aggfunc)
    pivot.index.name = row.removeprefix(PARAM_PREFIX)
    pivot.columns.name = col.removeprefix(PARAM_PREFIX)
    return pivot.sort_index().sort_index(axis=1)


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_value(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<table>{body}</table>"


def _heatmap_table(pivot: pd.DataFrame, metric: str) -> str:
    head = "".join(f"<th>{html.escape(format_value(c))}</th>" for c in pivot.columns)
    rows = "".join(
        f"<tr><th>{html.escape(format_value(idx))}</th>"
        + "".join(f"<td>{html.escape(format_value(float(v)))}</td>" for v in row)
        + "</tr>"
        for idx, row in zip(pivot.index, pivot.to_numpy(dtype=float), strict=True)
    )
    corner = html.escape(f"{pivot.index.name} \\ {pivot.columns.name}")
    return f"<h2>{html.escape(metric)} by parameters</h2><table><tr><th>{corner}</th>{head}</tr>{rows}</table>"


_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:0 2em 1em 0}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}th{background:#f4f4f4}"
    ".sections{display:flex;flex-wrap:wrap}img{max-width:100%}"
)


def _monthly_table(monthly: pd.DataFrame | None) -> str:
    if monthly is None or monthly.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in monthly.columns)
    rows = "".join(
        f"<tr><th>{int(year)}</th>" + "".join(f"<td>{format_percent_cell(float(v))}</td>" for v in row) + "</tr>"
        for year, row in zip(monthly.index, monthly.to_numpy(dtype=float), strict=True)
    )
    return f"<h2>Monthly returns (%)</h2><table><tr><th>year</th>{head}</tr>{rows}</table>"


def _splits_table(context: SheetContext) -> str:
    if not context.walk_forward:
        return ""
    rows = "".join(
        f"<tr><th>{k}</th><td>{html.escape(str(split.start))}</td><td>{html.escape(describe_params(split.params))}</td>"
        "</tr>"
        for k, split in enumerate(context.splits)
    )
    return (
        "<h2>Walk-forward test windows</h2><table><tr><th>split</th><th>first bar</th>"
        f"<th>parameters chosen on its train window</th></tr>{rows}</table>"
    )


def _html(
    title: str,
    analysis: PerformanceAnalysis,
    png: bytes,
    pivot: pd.DataFrame | None,
    metric: str,
    *,
    context: SheetContext,
    monthly: pd.DataFrame | None,
) -> str:
    ci = analysis.confidence_intervals
    ci_rows: dict[str, Any] = {
        f"{stat} {label}": f"[{format_value(lo)}, {format_value(hi)}]"
        for stat in ("total_return", "sharpe_ratio")
        for label, (lo, hi) in ci.get(stat, {}).items()
    }
    ci_rows["simulations"] = ci.get("n_simulations")
    ci_rows["seed"] = ci.get("seed")
    sections = "".join(
        f"<div><h2>{html.escape(name)}</h2>{_table(rows)}</div>"
        for name, rows in (
            ("Returns", analysis.basic_metrics),
            ("Risk", analysis.risk_metrics),
            ("Drawdowns", analysis.drawdown_analysis),
            ("Bootstrap confidence intervals", ci_rows),
        )
    )
    heat = _heatmap_table(pivot, metric) if pivot is not None and not pivot.empty else ""
    image = base64.b64encode(png).decode("ascii")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{analysis.n_periods} periods; annualised with {html.escape(analysis.frequency.describe())}.</p>"
        f"<div class=sections>{sections}</div>{_splits_table(context)}{_monthly_table(monthly)}{heat}"
        f'<img alt="tear sheet charts" src="data:image/png;base64,{image}"></body></html>'
    )


def _safe_stem(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).strip("._")
    if not cleaned:
        raise ValueError(f"file_stem {stem!r} has no usable characters; use letters, digits, '-', '_' or '.'")
    return cleaned


def build_tear_sheet(
    equity: pd.Series,
    returns: pd.Series,
    *,
    results: pd.DataFrame | None = None,
    heatmap_params: tuple[str, str] | None = None,
    heatmap_metric: str = "sharpe",
    title: str = "Backtest tear sheet",
    out_dir: str | Path,
    file_stem: str = "tear_sheet",
    analyzer: AdvancedPerformanceAnalyzer | None = None,
    context: SheetContext | None = None,
    dpi: int = 100,
) -> TearSheet:
    """Write ``<out_dir>/<file_stem>.png`` and ``.html`` for one equity/returns pair and return their paths.

    ``results`` (the sweep's results frame) plus ``heatmap_params`` (two parameter names) add a heat map of
    ``heatmap_metric`` averaged over the other parameters and splits. ``context`` names the symbol and
    dataset, and carries the buy-and-hold benchmark and the walk-forward splits to mark. Inputs are checked
    before anything is written; each file is written atomically.
    """
    if not isinstance(equity, pd.Series) or not isinstance(returns, pd.Series):
        raise TypeError("equity and returns must be pandas Series (e.g. SimulationResult.equity / .returns)")
    if heatmap_params is not None and results is None:
        raise ValueError("heatmap_params needs the results table: pass results=<sweep results frame>")
    context = context if context is not None else SheetContext()
    if context.benchmark is not None and not isinstance(context.benchmark, pd.Series):
        raise TypeError("SheetContext.benchmark must be a pandas Series (e.g. buy_and_hold_equity(...))")
    pivot = None
    if results is not None and heatmap_params is not None:
        pivot = heatmap_pivot(results, heatmap_params, metric=heatmap_metric)
    stem = _safe_stem(file_stem)
    chosen = analyzer if analyzer is not None else AdvancedPerformanceAnalyzer()
    analysis = chosen.analyze_comprehensive(returns, kind="returns")
    clean = returns.dropna()
    rolling = rolling_window_for(analysis.frequency, max(2, len(clean)))
    # Same annualisation and risk-free rate as the analysis, over the span chosen for this bar frequency.
    rolling_analyzer = AdvancedPerformanceAnalyzer(
        frequency=analysis.frequency, risk_free_rate=chosen.risk_free_rate, rolling_window=rolling.bars
    )
    rolling_sharpe = rolling_analyzer.rolling_metrics(clean)["rolling_sharpe"]
    monthly = monthly_returns_table(clean)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = tear_sheet_figure(
        title=title,
        equity=equity,
        returns=clean,
        analysis=analysis,
        rolling_sharpe=rolling_sharpe,
        rolling=rolling,
        context=context,
        heatmap=pivot,
        heatmap_metric=heatmap_metric,
        monthly=monthly,
        dpi=dpi,
    )
    png = _png_bytes(fig)
    png_path = out / f"{stem}.png"
    html_path = out / f"{stem}.html"
    page = _html(title, analysis, png, pivot, heatmap_metric, context=context, monthly=monthly)
    atomic_write_bytes(png_path, png)
    atomic_write_bytes(html_path, page.encode("utf-8"))
    log.info("tear_sheet_written", png=str(png_path), html=str(html_path), periods=analysis.n_periods)
    return TearSheet(
        png_path=png_path,
        html_path=html_path,
        analysis=analysis,
        heatmap=pivot,
        figure=fig,
        monthly_returns=monthly,
        rolling_window=rolling,
    )


def _png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
