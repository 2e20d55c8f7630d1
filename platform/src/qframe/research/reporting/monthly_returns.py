"""Monthly returns of a strategy as a year x month table in percent, compounded within each month."""

from __future__ import annotations

import numpy as np
import pandas as pd

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
YEAR_COLUMN = "Year"


def monthly_returns_table(returns: pd.Series) -> pd.DataFrame | None:
    """Rows: years; columns: ``Jan``..``Dec`` and ``Year``; values: compounded return in %, NaN without bars.

    None when ``returns`` has no DatetimeIndex (nothing says which month a bar belongs to).
    """
    if not isinstance(returns.index, pd.DatetimeIndex) or returns.empty:
        return None
    index = returns.index.tz_convert("UTC") if returns.index.tz is not None else returns.index
    values = pd.Series(returns.to_numpy(dtype=np.float64), index=index).dropna()
    if values.empty:
        return None
    growth = (1.0 + values).groupby([values.index.year, values.index.month]).prod()
    table = ((growth - 1.0) * 100.0).unstack()
    table = table.reindex(columns=range(1, 13))
    table.columns = list(MONTHS)
    yearly = (1.0 + values).groupby(values.index.year).prod()
    table[YEAR_COLUMN] = (yearly - 1.0) * 100.0
    table.index = table.index.astype(int)
    table.index.name = "year"
    return table


def format_percent_cell(value: float) -> str:
    """How a table cell reads: one decimal, a sign on gains, blank for a month without bars."""
    if not np.isfinite(value):
        return ""
    return f"{value:+.1f}"
