"""Reports for researchers: tear sheets (PNG + self-contained HTML), the per-strategy report of a sweep, and
the notebook views of results and analyses (HTML tables, interactive plotly figures)."""

from qframe.research.reporting.benchmark import buy_and_hold_equity
from qframe.research.reporting.interactive import analysis_figure, results_figure
from qframe.research.reporting.monthly_returns import monthly_returns_table
from qframe.research.reporting.notebook_html import analysis_html, results_html
from qframe.research.reporting.rolling_window import RollingWindow, rolling_window_for
from qframe.research.reporting.strategy_report import StrategyReport, log_strategy_report
from qframe.research.reporting.tear_sheet import TearSheet, build_tear_sheet, format_value, heatmap_pivot, sheet_title
from qframe.research.reporting.tear_sheet_figure import SheetContext, SplitMark

__all__ = [
    "RollingWindow",
    "SheetContext",
    "SplitMark",
    "StrategyReport",
    "TearSheet",
    "analysis_figure",
    "analysis_html",
    "build_tear_sheet",
    "buy_and_hold_equity",
    "format_value",
    "heatmap_pivot",
    "log_strategy_report",
    "monthly_returns_table",
    "results_figure",
    "results_html",
    "rolling_window_for",
    "sheet_title",
]
