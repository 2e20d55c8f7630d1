"""The rolling-Sharpe window of a tear sheet, as a span of time chosen from the bar frequency.

A fixed 30-bar window is a month of daily bars but 30 hours of hourly ones, so the chart title would not say
what the curve averages over. The window is the longest of :data:`SPANS` that still fits the series at least
:data:`MIN_WINDOWS_PER_SERIES` times and holds at least :data:`MIN_BARS` bars (fewer make a noisy Sharpe).
"""

from __future__ import annotations

from dataclasses import dataclass

from qframe.research.bar_frequency import BarFrequency

MIN_BARS = 10
MIN_WINDOWS_PER_SERIES = 3
# (label, share of a year): a session calendar's "1 day" is one of its 252 trading days.
SPANS: tuple[tuple[str, float], ...] = (
    ("6 months", 1 / 2),
    ("3 months", 1 / 4),
    ("1 month", 1 / 12),
    ("1 week", 1 / 52),
)


@dataclass(frozen=True)
class RollingWindow:
    bars: int
    span: str  # e.g. "3 months"; "N bars" when the frequency is only an assumption

    def describe(self) -> str:
        """E.g. ``3-month window (2,190 bars)``."""
        if self.span.endswith(" bars"):
            return f"{self.bars:,}-bar window"
        number, unit = self.span.split(" ", 1)
        return f"{number}-{unit.rstrip('s')} window ({self.bars:,} bars)"


def rolling_window_for(frequency: BarFrequency, n_bars: int) -> RollingWindow:
    """The window for ``n_bars`` bars annualised with ``frequency`` (see the module docstring)."""
    if n_bars < 2:
        raise ValueError(f"a rolling window needs a series of at least 2 bars, got {n_bars}")
    longest = max(2, n_bars // MIN_WINDOWS_PER_SERIES)
    if frequency.source != "default":
        day = 1 / 365 if frequency.calendar == "24/7" else 1 / 252
        for label, years in (*SPANS, ("1 day", day)):
            bars = round(frequency.bars_per_year * years)
            if MIN_BARS <= bars <= longest:
                return RollingWindow(bars, label)
    # No span fits (a short series, or bars too coarse for a week): the longest window that does, in bars.
    bars = min(longest, max(2, MIN_BARS))
    return RollingWindow(bars, f"{bars} bars")
