"""Interactive plotly figures of a sweep's results and of an analysis (what ``.plot()`` returns).

The ``go.Figure`` itself is returned: a notebook renders it with the plotly.js bundled in the plotly
package, and ``fig.write_html(path, include_plotlyjs=True)`` writes a file that needs no network, so both
work on an air-gapped cluster. plotly is imported when a figure is drawn, never on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from qframe.research.backtesting.results import PARAM_PREFIX, SAMPLE_IN, SAMPLE_OUT, param_columns

if TYPE_CHECKING:
    from qframe.research.backtesting.analytics import PerformanceAnalysis
    from qframe.research.backtesting.results import BacktestResults


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go  # noqa: PLC0415 - only a .plot() call needs plotly
        from plotly.subplots import make_subplots  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            ".plot() draws with plotly, which is not installed here: pip install plotly "
            "(tear sheets need only matplotlib)"
        ) from exc
    return go, make_subplots


def _params_text(row: pd.Series, params: list[str]) -> str:
    parts = []
    for column in params:
        value = row[column]
        if pd.isna(value):
            continue
        number = float(value)
        shown = str(int(number)) if number.is_integer() else f"{number:.4g}"
        parts.append(f"{column.removeprefix(PARAM_PREFIX)}={shown}")
    return ", ".join(parts)


def results_figure(results: BacktestResults) -> Any:
    """Grid: every combination's selection metric against its total return, one trace per strategy and dataset.

    Walk-forward: per split, the in-sample and out-of-sample metric of the parameters chosen on that split.
    """
    go, _ = _plotly()
    frame = results.frame
    metric = results.selection_metric
    if frame.empty:
        raise ValueError("the sweep has no rows to plot")
    params = param_columns(frame)
    fig = go.Figure()
    groups = frame.groupby(["strategy", "dataset"], sort=True)
    if results.walk_forward:
        for (strategy, dataset), group in groups:
            chosen = group[group["selected"].astype(bool)].sort_values("split_id")
            for sample, dash in ((SAMPLE_IN, "dot"), (SAMPLE_OUT, "solid")):
                rows = chosen[chosen["sample"] == sample]
                fig.add_trace(
                    go.Scatter(
                        x=rows["split_id"],
                        y=rows[metric],
                        mode="lines+markers",
                        line={"dash": dash},
                        name=f"{strategy} on {dataset}, {sample.replace('_', '-')}",
                        text=[_params_text(row, params) for _, row in rows.iterrows()],
                        hovertemplate=f"split %{{x}}<br>{metric} %{{y:.3f}}<br>%{{text}}<extra></extra>",
                    )
                )
        fig.update_layout(
            title=f"{metric} of the parameters chosen on each split: in-sample (dotted) vs out-of-sample",
            xaxis_title="walk-forward split",
            yaxis_title=metric,
        )
        fig.update_xaxes(dtick=1)
        return fig
    for (strategy, dataset), group in groups:
        fig.add_trace(
            go.Scatter(
                x=group["total_return"] * 100.0,
                y=group[metric],
                mode="markers",
                name=f"{strategy} on {dataset}",
                text=[_params_text(row, params) for _, row in group.iterrows()],
                hovertemplate=f"total return %{{x:.2f}}%<br>{metric} %{{y:.3f}}<br>%{{text}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{metric} against total return of every parameter combination ({len(frame):,} rows)",
        xaxis_title="total return (%)",
        yaxis_title=metric,
    )
    return fig


def analysis_figure(analysis: PerformanceAnalysis) -> Any:
    """Cumulative return, drawdown and rolling Sharpe of the analysed returns, on one shared time axis."""
    go, make_subplots = _plotly()
    window = analysis.rolling_metrics["rolling_sharpe"]
    titles = (
        "Cumulative return (%)",
        "Drawdown (%)",
        f"Rolling Sharpe ({analysis.rolling_window or len(window)}-bar window, annualised)",
    )
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.07)
    if analysis.returns is not None:
        growth = ((1.0 + analysis.returns).cumprod() - 1.0) * 100.0
        fig.add_trace(go.Scatter(x=growth.index, y=growth.to_numpy(), name="cumulative return"), row=1, col=1)
    drawdown = analysis.drawdown_series * 100.0
    fig.add_trace(
        go.Scatter(
            x=drawdown.index, y=drawdown.to_numpy(), name="drawdown", fill="tozeroy", line={"color": "firebrick"}
        ),
        row=2,
        col=1,
    )
    fig.add_trace(go.Scatter(x=window.index, y=window.to_numpy(), name="rolling Sharpe"), row=3, col=1)
    fig.update_yaxes(title_text="%", row=1, col=1)
    fig.update_yaxes(title_text="%", row=2, col=1)
    fig.update_yaxes(title_text="Sharpe", row=3, col=1)
    sharpe = analysis.basic_metrics["sharpe_ratio"]
    fig.update_layout(
        title=f"Performance of {analysis.n_periods:,} periods: Sharpe {sharpe:.3f}, annualised with "
        f"{analysis.frequency.describe()}",
        height=750,
    )
    return fig
