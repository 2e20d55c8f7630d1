"""How many bars make a year: inferred from the timestamps, calendar-aware, or given by the user.

Every annualised figure (Sharpe, Sortino, volatility, annual return) scales with this one number, so it is
decided once per dataset and then used by the sweep, the summary, the tear sheet, the tracking run and the
analyzer alike.

Inference, from the bars' timestamps (UTC):

- the bar is the median spacing of consecutive timestamps;
- the calendar is **24/7** (crypto, FX aggregates) when weekend bars are common (at least
  :data:`WEEKEND_SHARE_24_7` of the bars fall on a Saturday or Sunday; a 24/7 series has 2/7), otherwise
  **exchange sessions** (no trading at weekends, nor overnight for intraday bars);
- 24/7: bars a year = 365 days / bar (1h -> 8,760; 1d -> 365);
- weekly and longer bars, any calendar: 52 a year weekly, 12 monthly, 4 quarterly;
- exchange sessions, daily bars: 252 a year;
- exchange sessions, intraday bars: 252 sessions x the median number of bars per session day (a 6.5-hour
  session of hourly bars -> 7 bars -> 1,764 a year).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Calendar = Literal["24/7", "exchange sessions", "unknown"]
Source = Literal["inferred", "given", "default"]

WEEKEND_SHARE_24_7 = 0.15
TRADING_DAYS_PER_YEAR = 252
DAYS_PER_YEAR_24_7 = 365
DEFAULT_BARS_PER_YEAR = 252.0
# Median spacing in days from which bars count as daily (a business-day series has 1.0-day median spacing) and
# from which they count as weekly or longer; and (shortest, longest, bars a year) of those longer periods.
_DAILY_BAR_DAYS = 0.8
_LONG_BAR_DAYS = 4.5
_LONG_PERIODS: tuple[tuple[float, float, float, str], ...] = (
    (4.5, 8.5, 52.0, "weekly"),
    (25.0, 35.0, 12.0, "monthly"),
    (85.0, 95.0, 4.0, "quarterly"),
)
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class BarFrequency:
    """The annualisation of one dataset and where it came from (shown next to every annualised figure)."""

    bars_per_year: float
    calendar: Calendar
    source: Source
    bar: pd.Timedelta | None = None
    bars_per_session: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bars_per_year) and self.bars_per_year > 0):
            raise ValueError(f"bars_per_year must be a positive number, got {self.bars_per_year!r}")

    def describe(self) -> str:
        """E.g. ``1h bars, 24/7 calendar: 8,760 bars/year (inferred from the timestamps)``."""
        bpy = f"{self.bars_per_year:,.0f}" if float(self.bars_per_year).is_integer() else f"{self.bars_per_year:,.2f}"
        if self.source == "given":
            return f"{bpy} bars/year (given)"
        if self.source == "default":
            return f"{bpy} bars/year (assumed: no timestamps to infer from)"
        bar = _format_bar(self.bar) if self.bar is not None else "?"
        session = f", {self.bars_per_session:g} bars per session" if self.bars_per_session else ""
        return f"{bar} bars, {self.calendar} calendar{session}: {bpy} bars/year (inferred from the timestamps)"

    def as_params(self) -> dict[str, str | float]:
        """Flat figures for a tracking run."""
        return {
            "bars_per_year": self.bars_per_year,
            "annualisation": self.describe(),
            "calendar": self.calendar,
        }


def given(bars_per_year: float) -> BarFrequency:
    return BarFrequency(float(bars_per_year), "unknown", "given")


def infer_bar_frequency(timestamps: np.ndarray | pd.DatetimeIndex | pd.Series) -> BarFrequency:
    """The bar frequency of ``timestamps`` (naive values are read as UTC); see the module docstring."""
    index = pd.DatetimeIndex(timestamps)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    index = index[~index.isna()].unique().sort_values().as_unit("ns")
    if len(index) < 2:
        raise ValueError(
            f"cannot infer the bar frequency from {len(index)} timestamp(s); pass bars_per_year "
            "(252 daily exchange bars, 365 daily 24/7, 8760 hourly 24/7)"
        )
    spacing = np.diff(index.asi8)
    bar = pd.Timedelta(int(np.median(spacing)), unit="ns")
    weekend_share = float(np.mean(index.day_of_week >= 5))
    calendar: Calendar = "24/7" if weekend_share >= WEEKEND_SHARE_24_7 else "exchange sessions"
    days = bar / _DAY
    if days >= _LONG_BAR_DAYS:
        # Weekly and longer bars: a year holds as many of them on any calendar.
        for low, high, per_year, _ in _LONG_PERIODS:
            if low <= days <= high:
                return BarFrequency(per_year, calendar, "inferred", bar)
        return BarFrequency(365.25 / days, calendar, "inferred", bar)
    if calendar == "24/7":
        return BarFrequency(DAYS_PER_YEAR_24_7 / days, calendar, "inferred", bar)
    if days >= _DAILY_BAR_DAYS:
        return BarFrequency(
            TRADING_DAYS_PER_YEAR * round(1.0 / days, 6) if days < 1 else TRADING_DAYS_PER_YEAR / round(days),
            calendar,
            "inferred",
            bar,
        )
    per_session = float(np.median(pd.Series(1, index=index).groupby(index.normalize()).size().to_numpy()))
    return BarFrequency(TRADING_DAYS_PER_YEAR * per_session, calendar, "inferred", bar, per_session)


def resolve_frequency(
    timestamps: np.ndarray | pd.DatetimeIndex | pd.Series | None, bars_per_year: float | None
) -> BarFrequency:
    """The user's ``bars_per_year`` when given, else inferred from ``timestamps`` (252 when there are none)."""
    if bars_per_year is not None:
        if isinstance(bars_per_year, bool) or not (math.isfinite(bars_per_year) and bars_per_year > 0):
            raise ValueError(
                f"bars_per_year must be a positive number (252 daily exchange bars, 8760 hourly 24/7) or None to "
                f"infer it from the timestamps, got {bars_per_year!r}"
            )
        return given(bars_per_year)
    if timestamps is None:
        return BarFrequency(DEFAULT_BARS_PER_YEAR, "unknown", "default")
    return infer_bar_frequency(timestamps)


def _format_bar(bar: pd.Timedelta) -> str:
    seconds = bar.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(bar)
