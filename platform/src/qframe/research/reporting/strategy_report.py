"""One call per strategy after a sweep: summary figures, tear sheet, and the nested tracking run.

The report is built here and handed to the tracker as plain params, metrics and files, so the tracking
adapters never draw or summarise anything themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.backtesting.results import StrategySummary, grid_rows, summarize_results
from qframe.research.reporting.tear_sheet import TearSheet, build_tear_sheet, sheet_title
from qframe.research.reporting.tear_sheet_figure import SheetContext
from qframe.research.tracking.base import ExperimentTracker


@dataclass(frozen=True)
class StrategyReport:
    run_id: str
    summary: StrategySummary
    tear_sheet: TearSheet


def log_strategy_report(
    tracker: ExperimentTracker,
    strategy: str,
    results: pd.DataFrame,
    *,
    equity: pd.Series,
    returns: pd.Series,
    out_dir: str | Path,
    params: Mapping[str, Any] | None = None,
    metric: str = "sharpe",
    heatmap_params: tuple[str, str] | None = None,
    analyzer: AdvancedPerformanceAnalyzer | None = None,
    context: SheetContext | None = None,
    file_stem: str | None = None,
) -> StrategyReport:
    """Summarise ``results``, draw the tear sheet of the best combination's ``equity``/``returns``, log both.

    ``equity``/``returns`` are the best combination's simulation (e.g. ``simulate(...)`` with
    ``summary.best_params``); the analysis metrics of that curve are logged as ``analysis.<name>``.
    ``context`` (symbol, dataset, benchmark, walk-forward splits) goes to the tear sheet; ``file_stem``
    names its files (default: the strategy).
    """
    summary = summarize_results(results, metric=metric)
    sheet = build_tear_sheet(
        equity,
        returns,
        results=grid_rows(results) if heatmap_params is not None else None,
        heatmap_params=heatmap_params,
        heatmap_metric=metric,
        title=sheet_title(strategy, context or SheetContext(), metric=metric, best_params=summary.best_params),
        out_dir=out_dir,
        file_stem=file_stem or strategy,
        analyzer=analyzer,
        context=context,
    )
    metrics: dict[str, float] = summary.metrics()
    metrics.update({f"analysis.{k}": v for k, v in sheet.analysis.scalar_metrics().items()})
    run_id = tracker.log_strategy(
        strategy,
        params={**dict(params or {}), **summary.params(), "selection_metric": metric},
        metrics=metrics,
        results_frame=results,
        artifacts={
            f"tear_sheet/{sheet.png_path.name}": sheet.png_path,
            f"tear_sheet/{sheet.html_path.name}": sheet.html_path,
        },
    )
    return StrategyReport(run_id=run_id, summary=summary, tear_sheet=sheet)
