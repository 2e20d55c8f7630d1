"""Reports for researchers: tear sheets (PNG + self-contained HTML) and the per-strategy report of a sweep."""

from qframe.research.reporting.strategy_report import StrategyReport, log_strategy_report
from qframe.research.reporting.tear_sheet import TearSheet, build_tear_sheet, format_value, heatmap_pivot

__all__ = ["StrategyReport", "TearSheet", "build_tear_sheet", "format_value", "heatmap_pivot", "log_strategy_report"]
