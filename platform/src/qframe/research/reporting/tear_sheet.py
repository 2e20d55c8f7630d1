"""Tear sheet of one strategy: equity, drawdown, rolling Sharpe, return distribution and a parameter heat map.

The PNG is drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas (no pyplot, so no global figure
state and no backend switch for the caller's notebook). The HTML embeds that PNG as base64 next to the metric
tables: one self-contained file with no script or stylesheet to fetch, so it opens on an air-gapped cluster.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from qframe.research.atomic_files import atomic_write_bytes
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer, PerformanceAnalysis
from qframe.research.backtesting.results import PARAM_PREFIX

log = structlog.get_logger(__name__)

_MAX_ANNOTATED_CELLS = 150


@dataclass(frozen=True)
class TearSheet:
    png_path: Path
    html_path: Path
    analysis: PerformanceAnalysis
    heatmap: pd.DataFrame | None = None


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


def _draw(
    fig: Figure,
    *,
    title: str,
    equity: pd.Series,
    analysis: PerformanceAnalysis,
    returns: pd.Series,
    heatmap: pd.DataFrame | None,
    heatmap_metric: str,
) -> None:
    grid = fig.add_gridspec(4, 2, height_ratios=[1.3, 1.0, 1.0, 1.2])
    fig.suptitle(title, fontsize=14)

    ax = fig.add_subplot(grid[0, :])
    ax.plot(equity.index, equity.to_numpy(dtype=float), color="tab:blue", linewidth=1.0)
    ax.set_title("Equity curve")
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[1, :])
    dd = analysis.drawdown_series
    ax.fill_between(dd.index, dd.to_numpy(dtype=float), 0.0, color="tab:red", alpha=0.4, step="post")
    ax.set_title(f"Drawdown (max {format_value(analysis.drawdown_analysis['max_drawdown'])})")
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[2, :])
    rolling = analysis.rolling_metrics["rolling_sharpe"]
    ax.plot(rolling.index, rolling.to_numpy(dtype=float), color="tab:green", linewidth=1.0)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_title("Rolling Sharpe")
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[3, 0])
    values = returns.to_numpy(dtype=float)
    if values.size:
        ax.hist(values, bins=min(60, max(5, values.size // 5)), color="tab:gray", alpha=0.8)
    var = analysis.risk_metrics["var_95"]
    if not math.isnan(var):
        ax.axvline(var, color="tab:red", linestyle="--", label=f"VaR 95% {format_value(var)}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Return distribution")

    ax = fig.add_subplot(grid[3, 1])
    if heatmap is None or heatmap.empty:
        ax.text(0.5, 0.5, "no parameter heat map", ha="center", va="center")
        ax.set_axis_off()
        return
    data = heatmap.to_numpy(dtype=float)
    image = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(data.shape[1]), [format_value(v) for v in heatmap.columns], rotation=45, fontsize=7)
    ax.set_yticks(range(data.shape[0]), [format_value(v) for v in heatmap.index], fontsize=7)
    ax.set_xlabel(str(heatmap.columns.name))
    ax.set_ylabel(str(heatmap.index.name))
    ax.set_title(f"{heatmap_metric} by parameters")
    fig.colorbar(image, ax=ax)
    if data.size <= _MAX_ANNOTATED_CELLS:
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white")


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


def _html(title: str, analysis: PerformanceAnalysis, png: bytes, pivot: pd.DataFrame | None, metric: str) -> str:
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
        f"<div class=sections>{sections}</div>{heat}"
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
    dpi: int = 100,
) -> TearSheet:
    """Write ``<out_dir>/<file_stem>.png`` and ``.html`` for one equity/returns pair and return their paths.

    ``results`` (the sweep's results frame) plus ``heatmap_params`` (two parameter names) add a heat map of
    ``heatmap_metric`` averaged over the other parameters and splits. Inputs are checked before anything is
    written; each file is written atomically.
    """
    if not isinstance(equity, pd.Series) or not isinstance(returns, pd.Series):
        raise TypeError("equity and returns must be pandas Series (e.g. SimulationResult.equity / .returns)")
    if heatmap_params is not None and results is None:
        raise ValueError("heatmap_params needs the results table: pass results=<sweep results frame>")
    pivot = None
    if results is not None and heatmap_params is not None:
        pivot = heatmap_pivot(results, heatmap_params, metric=heatmap_metric)
    stem = _safe_stem(file_stem)
    chosen = analyzer if analyzer is not None else AdvancedPerformanceAnalyzer()
    analysis = chosen.analyze_comprehensive(returns, kind="returns")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(12, 14), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # attaches an Agg canvas to this figure only
    _draw(
        fig,
        title=title,
        equity=equity,
        analysis=analysis,
        returns=returns.dropna(),
        heatmap=pivot,
        heatmap_metric=heatmap_metric,
    )
    png = _png_bytes(fig)
    png_path = out / f"{stem}.png"
    html_path = out / f"{stem}.html"
    atomic_write_bytes(png_path, png)
    atomic_write_bytes(html_path, _html(title, analysis, png, pivot, heatmap_metric).encode("utf-8"))
    log.info("tear_sheet_written", png=str(png_path), html=str(html_path), periods=analysis.n_periods)
    return TearSheet(png_path=png_path, html_path=html_path, analysis=analysis, heatmap=pivot)


def _png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
