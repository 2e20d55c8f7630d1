"""The tear sheet's picture, drawn as a pure function of the figures it shows.

Panels, top to bottom: equity against buy-and-hold (walk-forward: the chained test windows with their
boundaries and chosen parameters), drawdown in %, rolling Sharpe over a stated span of time, the return
distribution next to the parameter heat map, and the monthly returns table. The ``Figure`` has its own Agg
canvas (no pyplot: no global figure state, no backend switch in the caller's notebook); tests read it back.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from qframe.research.backtesting.analytics import PerformanceAnalysis
from qframe.research.reporting.monthly_returns import format_percent_cell
from qframe.research.reporting.rolling_window import RollingWindow

SPLIT_BOUNDARY_GID = "split_boundary"
BENCHMARK_LABEL = "Buy and hold"
STRATEGY_LABEL = "Strategy"
# Tick labels beyond this many per heat-map axis overlap at the sheet's size: every k-th is shown instead.
MAX_HEATMAP_TICKS = 10
MAX_ANNOTATED_CELLS = 80
# Parameter captions per walk-forward split are written only while they fit side by side.
MAX_CAPTIONED_SPLITS = 6
WIDTH_INCHES = 12.0
BASE_HEIGHT_INCHES = 16.0
TABLE_ROW_INCHES = 0.28


@dataclass(frozen=True)
class SplitMark:
    """One walk-forward test window: where it starts and the parameters chosen on its train window."""

    start: Any  # the timestamp (or bar position) of the window's first bar
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SheetContext:
    """What the returns alone do not say: where they come from and what to compare them with."""

    symbol: str | None = None
    dataset: str | None = None
    benchmark: pd.Series | None = None  # buy-and-hold equity on the strategy's bars (see benchmark.py)
    splits: tuple[SplitMark, ...] = ()

    @property
    def walk_forward(self) -> bool:
        return bool(self.splits)

    def source(self) -> str:
        """E.g. ``AAA (bars.demo-1h@v1)``; empty when neither is known."""
        if self.symbol and self.dataset and self.dataset != self.symbol:
            return f"{self.symbol} ({self.dataset})"
        return self.symbol or self.dataset or ""


def describe_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_compact(value)}" for name, value in params.items())


def tear_sheet_figure(
    *,
    title: str,
    equity: pd.Series,
    returns: pd.Series,
    analysis: PerformanceAnalysis,
    rolling_sharpe: pd.Series,
    rolling: RollingWindow,
    context: SheetContext,
    heatmap: pd.DataFrame | None,
    heatmap_metric: str,
    monthly: pd.DataFrame | None,
    dpi: int = 100,
) -> Figure:
    """The whole sheet as one ``Figure`` (see the module docstring); nothing is written."""
    table_rows = 0 if monthly is None else len(monthly)
    height = BASE_HEIGHT_INCHES + TABLE_ROW_INCHES * max(0, table_rows - 2)
    fig = Figure(figsize=(WIDTH_INCHES, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # attaches an Agg canvas to this figure only
    table_ratio = 0.3 + 0.12 * max(1, table_rows)
    grid = fig.add_gridspec(5, 2, height_ratios=[1.5, 0.9, 0.9, 1.3, table_ratio])
    annualised = f"annualised with {analysis.frequency.describe()}"
    fig.suptitle(f"{textwrap.fill(title, width=110)}\n{annualised}", fontsize=13)
    time_label = "Time (UTC)" if isinstance(equity.index, pd.DatetimeIndex) else "Bar"

    top = fig.add_subplot(grid[0, :])
    _draw_equity(top, equity, context)
    top.set_xlabel(time_label)

    # The time panels share one x axis, so a date lines up across equity, drawdown and rolling Sharpe.
    ax = fig.add_subplot(grid[1, :], sharex=top)
    dd = analysis.drawdown_series * 100.0
    ax.fill_between(dd.index, dd.to_numpy(dtype=float), 0.0, color="tab:red", alpha=0.4, step="post")
    max_dd = analysis.drawdown_analysis["max_drawdown"] * 100.0
    ax.set_title(f"Drawdown from the running peak (max {max_dd:.1f}%)")
    ax.set_ylabel("Drawdown (%)")
    ax.set_xlabel(time_label)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    _mark_splits(ax, context.splits)
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(grid[2, :], sharex=top)
    ax.plot(rolling_sharpe.index, rolling_sharpe.to_numpy(dtype=float), color="tab:green", linewidth=1.0)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_title(f"Rolling Sharpe ratio over a {rolling.describe()}")
    ax.set_ylabel("Sharpe ratio (annualised)")
    ax.set_xlabel(time_label)
    _mark_splits(ax, context.splits)
    ax.grid(alpha=0.3)

    _draw_distribution(fig.add_subplot(grid[3, 0]), returns, analysis)
    _draw_heatmap(fig, fig.add_subplot(grid[3, 1]), heatmap, heatmap_metric)
    _draw_monthly_table(fig.add_subplot(grid[4, :]), monthly)
    return fig


def _draw_equity(ax: Axes, equity: pd.Series, context: SheetContext) -> None:
    ax.plot(equity.index, equity.to_numpy(dtype=float), color="tab:blue", linewidth=1.1, label=STRATEGY_LABEL)
    if context.benchmark is not None:
        name = f"{BENCHMARK_LABEL} {context.symbol}" if context.symbol else BENCHMARK_LABEL
        bench = context.benchmark
        ax.plot(bench.index, bench.to_numpy(dtype=float), color="tab:gray", linewidth=1.0, label=name)
    if context.walk_forward:
        ax.set_title(
            f"Out-of-sample equity of {len(context.splits)} chained test windows (parameters chosen per split above)"
        )
        _mark_splits(ax, context.splits, label=True)
        _caption_splits(ax, context.splits)
    else:
        ax.set_title("Equity of the chosen parameters over the whole series")
    ax.set_ylabel("Equity (account currency)")
    ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def _mark_splits(ax: Axes, splits: Sequence[SplitMark], *, label: bool = False) -> None:
    # The first test window starts the curve, so only the starts after it are boundaries.
    for k, split in enumerate(splits[1:]):
        ax.axvline(
            split.start,
            color="tab:purple",
            linestyle="--",
            linewidth=0.9,
            gid=SPLIT_BOUNDARY_GID,
            label="split boundary" if label and k == 0 else None,
        )


def _caption_splits(ax: Axes, splits: Sequence[SplitMark]) -> None:
    """Each split's chosen parameters as tick labels on a top axis, above the curve instead of over it."""
    positions = [split.start for split in splits]  # timestamps: the top axis converts them like the equity axis
    if len(splits) <= MAX_CAPTIONED_SPLITS:
        labels = [f"split {k}: " + describe_params(split.params) for k, split in enumerate(splits)]
        labels = [textwrap.fill(label, width=28) for label in labels]
    else:
        step = math.ceil(len(splits) / MAX_HEATMAP_TICKS)
        positions, labels = positions[::step], [f"split {k}" for k in range(0, len(splits), step)]
    top = ax.secondary_xaxis("top")
    top.set_xticks(positions, labels, fontsize=7, color="tab:purple", ha="left")


def _draw_distribution(ax: Axes, returns: pd.Series, analysis: PerformanceAnalysis) -> None:
    values = returns.to_numpy(dtype=float) * 100.0
    if values.size:
        ax.hist(values, bins=min(60, max(5, values.size // 5)), color="tab:gray", alpha=0.8)
    var = analysis.risk_metrics["var_95"]
    if not math.isnan(var):
        ax.axvline(var * 100.0, color="tab:red", linestyle="--", label=f"VaR 95%: {var * 100.0:.2f}%")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Distribution of returns per bar")
    ax.set_xlabel("Return per bar (%)")
    ax.set_ylabel("Number of bars")
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=1))


def _tick_positions(n: int) -> list[int]:
    step = max(1, math.ceil(n / MAX_HEATMAP_TICKS))
    return list(range(0, n, step))


def _draw_heatmap(fig: Figure, ax: Axes, heatmap: pd.DataFrame | None, metric: str) -> None:
    if heatmap is None or heatmap.empty:
        ax.text(0.5, 0.5, "no parameter heat map\n(fewer than two parameters vary)", ha="center", va="center")
        ax.set_axis_off()
        return
    data = heatmap.to_numpy(dtype=float)
    image = ax.imshow(data, aspect="auto", origin="lower", cmap="viridis")
    columns = _tick_positions(data.shape[1])
    rows = _tick_positions(data.shape[0])
    # Few labels fit upright; more are turned so that neighbours do not overlap.
    turned = len(columns) > 6
    ax.set_xticks(
        columns,
        [_compact(heatmap.columns[j]) for j in columns],
        fontsize=8,
        rotation=45 if turned else 0,
        ha="right" if turned else "center",
    )
    ax.set_yticks(rows, [_compact(heatmap.index[i]) for i in rows], fontsize=8)
    ax.set_xlabel(str(heatmap.columns.name))
    ax.set_ylabel(str(heatmap.index.name))
    ax.set_title(f"{metric} by parameters (mean over the other parameters and splits)")
    fig.colorbar(image, ax=ax, label=metric)
    if data.size <= MAX_ANNOTATED_CELLS:
        finite = data[np.isfinite(data)]
        middle = float((finite.min() + finite.max()) / 2) if finite.size else 0.0
        for (i, j), value in np.ndenumerate(data):
            if np.isfinite(value):
                # viridis is dark at the low end: white text there, black on the light half.
                colour = "white" if value < middle else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)


def _draw_monthly_table(ax: Axes, monthly: pd.DataFrame | None) -> None:
    ax.set_axis_off()
    ax.set_title("Monthly returns (%), compounded; Year = the whole calendar year")
    if monthly is None or monthly.empty:
        ax.text(0.5, 0.5, "no timestamps: no monthly table", ha="center", va="center")
        return
    cells = [[format_percent_cell(float(v)) for v in row] for row in monthly.to_numpy(dtype=float)]
    colours = [[_cell_colour(float(v)) for v in row] for row in monthly.to_numpy(dtype=float)]
    table = ax.table(
        cellText=cells,
        cellColours=colours,
        rowLabels=[str(year) for year in monthly.index],
        colLabels=list(monthly.columns),
        colWidths=[0.9 / len(monthly.columns)] * len(monthly.columns),
        cellLoc="center",
        loc="upper center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.4)  # row height: room around the digits, whatever the number of years


def _cell_colour(value: float) -> str:
    if not np.isfinite(value) or value == 0:
        return "white"
    return "#d8f0d8" if value > 0 else "#f6d5d5"


def _compact(value: Any) -> str:
    """Parameter values as a researcher typed them: 20 not 20.0000, 0.015 not 0.0150."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else f"{number:.4g}"
    return str(value)
