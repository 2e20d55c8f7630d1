"""Reports for researchers: tear sheets (PNG + self-contained HTML)."""

from qframe.research.reporting.tear_sheet import TearSheet, build_tear_sheet, format_value, heatmap_pivot

__all__ = ["TearSheet", "build_tear_sheet", "format_value", "heatmap_pivot"]
