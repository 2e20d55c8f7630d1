"""Performance analytics of one return stream: the seed's ``AdvancedPerformanceAnalyzer``.

Conventions (every figure is per the periodic returns ``r_1..r_n`` of the series given):

- ``bars_per_year`` is given, or inferred from the series' timestamps (calendar-aware: 24/7 vs exchange
  sessions, see :mod:`qframe.research.bar_frequency`), or 252 for a series without timestamps.
- ``total_return`` = prod(1 + r) - 1; ``annualized_return`` = (1 + total)^(bars_per_year / n) - 1 (geometric).
- ``volatility`` = sample std (ddof=1) x sqrt(bars_per_year).
- ``sharpe_ratio`` = mean(r - rf) / std(r - rf, ddof=1) x sqrt(bars_per_year), with the annual ``risk_free_rate``
  turned into a per-bar rate rf = (1 + rate)^(1 / bars_per_year) - 1.
- ``sortino_ratio`` = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) x sqrt(bars_per_year) (downside deviation over
  all bars, target rf).
- ``calmar_ratio`` = annualized_return / |max_drawdown|.
- Undefined ratios are NaN, never 0 or inf: zero volatility (constant returns) gives a NaN Sharpe, no losing bar
  gives a NaN Sortino, no drawdown gives a NaN Calmar. A 0 would read as "no edge", inf breaks tables and MLflow.
- ``var_95`` = historical 5% quantile of r (numpy's linear interpolation), reported as a return: a loss is
  negative. ``cvar_95`` = mean of the returns at or below ``var_95``.
- ``skewness`` = adjusted Fisher-Pearson G1; ``kurtosis`` is EXCESS kurtosis (normal = 0), bias-adjusted G2 --
  both as pandas' ``Series.skew()`` / ``Series.kurt()``.
- ``max_consecutive_losses`` = longest run of bars with r < 0 (a flat bar ends the run).
- Drawdowns are measured on the wealth path W_0 = 1, W_t = prod_{i<=t}(1 + r_i), so a loss on the first bar is a
  drawdown. dd_t = W_t / max_{s<=t} W_s - 1 (<= 0). An episode is a maximal run of bars under water;
  ``avg_drawdown`` is the mean of the episodes' troughs, ``time_in_drawdown`` the fraction of bars under water,
  ``longest_drawdown_bars`` the most bars under water in one episode, ``longest_drawdown_duration`` (datetime
  index only) the time from that episode's first underwater bar to its recovery bar (or the last bar).
- Rolling metrics use a trailing window of ``rolling_window`` bars (full windows only), annualised as above.
- An empty series gives total_return 0, counts 0, max_drawdown 0 and NaN for everything else.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from qframe.research.backtesting.monte_carlo import DEFAULT_CONFIDENCE_LEVELS, bootstrap_confidence_intervals
from qframe.research.bar_frequency import DEFAULT_BARS_PER_YEAR, BarFrequency, resolve_frequency

FloatArray = npt.NDArray[np.float64]
SeriesKind = Literal["auto", "returns", "equity"]

# Drawdowns smaller than this are float noise from compounding, not a loss.
_UNDERWATER_TOLERANCE = 1e-12


@dataclass(frozen=True)
class DrawdownEpisode:
    start: int  # position (in the return series) of the first bar under water
    end: int  # position of the recovery bar, or n if never recovered
    trough: float  # deepest drawdown of the episode (negative)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PerformanceAnalysis:
    """Result of :meth:`AdvancedPerformanceAnalyzer.analyze_comprehensive`; indexable like the seed's dict."""

    basic_metrics: dict[str, float]
    risk_metrics: dict[str, float]
    drawdown_analysis: dict[str, Any]
    rolling_metrics: dict[str, pd.Series]
    confidence_intervals: dict[str, Any]
    n_periods: int
    drawdown_series: pd.Series = field(repr=False)
    frequency: BarFrequency = field(default_factory=lambda: resolve_frequency(None, None))
    # The analysed returns and the rolling window, for .plot() to draw what the figures summarise.
    returns: pd.Series | None = field(default=None, repr=False)
    rolling_window: int | None = None

    def _repr_html_(self) -> str:
        """The metric sections as tables, for a notebook cell that ends with the analysis."""
        from qframe.research.reporting.notebook_html import analysis_html  # noqa: PLC0415 - reporting imports us

        return analysis_html(self)

    def plot(self) -> Any:
        """An interactive plotly ``go.Figure``: cumulative return, drawdown and rolling Sharpe (offline)."""
        from qframe.research.reporting.interactive import analysis_figure  # noqa: PLC0415 - reporting imports us

        return analysis_figure(self)

    def __getitem__(self, key: str) -> Any:
        sections = self.to_dict()
        if key not in sections:
            raise KeyError(f"{key!r} is not an analysis section; choose one of {sorted(sections)}")
        return sections[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "basic_metrics": dict(self.basic_metrics),
            "risk_metrics": dict(self.risk_metrics),
            "drawdown_analysis": dict(self.drawdown_analysis),
            "rolling_metrics": dict(self.rolling_metrics),
            "confidence_intervals": dict(self.confidence_intervals),
            "n_periods": self.n_periods,
            "bars_per_year": self.frequency.bars_per_year,
            "annualisation": self.frequency.describe(),
        }

    def scalar_metrics(self) -> dict[str, float]:
        """Flat ``section.metric -> float`` view of every scalar figure (for tables and experiment tracking)."""
        out: dict[str, float] = {}
        for section in ("basic_metrics", "risk_metrics", "drawdown_analysis"):
            for name, value in getattr(self, section).items():
                if isinstance(value, pd.Timedelta):
                    out[f"{name}_days"] = value / pd.Timedelta(days=1)
                elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
                    out[name] = float(value)
        out["bars_per_year"] = self.frequency.bars_per_year
        for stat in ("total_return", "sharpe_ratio"):
            for label, (lo, hi) in self.confidence_intervals.get(stat, {}).items():
                tag = label.rstrip("%").replace(".", "_")
                out[f"{stat}_ci{tag}_low"] = lo
                out[f"{stat}_ci{tag}_high"] = hi
        return out


def _as_series(values: Any, what: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, np.ndarray | list | tuple):
        return pd.Series(np.asarray(values, dtype=np.float64))
    raise TypeError(
        f"{what} must be a pandas Series (or array) of floats, got {type(values).__name__}; "
        "pass periodic returns, an equity curve, or an object with .returns / .equity"
    )


_NAMED_KINDS: dict[str, SeriesKind] = {"equity": "equity", "returns": "returns", "wealth": "equity", "nav": "equity"}


def _looks_like_equity(series: pd.Series) -> bool:
    # Periodic returns whose median exceeds +50% per bar are not plausible; a positive curve around such levels is
    # an equity/wealth path. A Series named equity/returns/wealth/nav, or kind=, skips the guess.
    finite = series[np.isfinite(series.to_numpy(dtype=np.float64))]
    return bool(len(finite) > 0 and (finite > 0).all() and finite.median() > 0.5)


def returns_from(result: Any, *, kind: SeriesKind = "auto") -> pd.Series:
    """Periodic returns from returns, an equity curve, or an object with ``.returns`` / ``.equity``."""
    if kind not in ("auto", "returns", "equity"):
        raise ValueError(f"kind must be 'auto', 'returns' or 'equity', got {kind!r}")
    if not isinstance(result, pd.Series | np.ndarray | list | tuple):
        returns = getattr(result, "returns", None)
        equity = getattr(result, "equity", None)
        if returns is not None:
            result, kind = returns, "returns"
        elif equity is not None:
            result, kind = equity, "equity"
    series = _as_series(result, "result").astype(np.float64)
    if kind == "auto" and isinstance(series.name, str) and series.name.lower() in _NAMED_KINDS:
        kind = _NAMED_KINDS[series.name.lower()]
    if kind == "auto":
        kind = "equity" if _looks_like_equity(series) else "returns"
    if kind == "equity":
        if (series.dropna() <= 0).any():
            raise ValueError("equity curve has non-positive values; returns are undefined there (pass kind='returns')")
        series = series.pct_change()
        series = series.iloc[1:] if len(series) else series
    series = series.dropna()
    if np.isinf(series.to_numpy()).any():
        raise ValueError("returns contain infinite values; check the equity curve for zeros before a recovery")
    return series


def drawdown_series(returns: pd.Series) -> pd.Series:
    """dd_t = W_t / running peak - 1 on the wealth path starting at W_0 = 1 (so the first bar can be a loss)."""
    wealth = np.cumprod(1.0 + returns.to_numpy(dtype=np.float64))
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    return pd.Series(wealth / peak - 1.0, index=returns.index, name="drawdown")


def drawdown_episodes(drawdown: FloatArray) -> list[DrawdownEpisode]:
    underwater = drawdown < -_UNDERWATER_TOLERANCE
    if not underwater.any():
        return []
    edges = np.diff(np.concatenate(([0], underwater.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [DrawdownEpisode(int(s), int(e), float(drawdown[s:e].min())) for s, e in zip(starts, ends, strict=True)]


def max_consecutive_losses(returns: FloatArray) -> int:
    losing = returns < 0
    if not losing.any():
        return 0
    edges = np.diff(np.concatenate(([0], losing.astype(np.int8), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


class AdvancedPerformanceAnalyzer:
    """Seed API: ``AdvancedPerformanceAnalyzer().analyze_comprehensive(result)``. See the module docstring."""

    def __init__(
        self,
        bars_per_year: float | None = None,
        risk_free_rate: float = 0.0,
        rolling_window: int = 30,
        *,
        n_simulations: int = 1000,
        seed: int | None = 0,
        confidence_levels: Sequence[float] = DEFAULT_CONFIDENCE_LEVELS,
        block_size: int | None = None,
        frequency: BarFrequency | None = None,
    ) -> None:
        if frequency is not None:
            # The sweep's annualisation of the dataset, with where it came from (shown in tear sheets).
            bars_per_year = frequency.bars_per_year
        if bars_per_year is not None and not bars_per_year > 0:
            raise ValueError(
                f"bars_per_year must be positive (252 for daily bars, 8760 for hourly 24/7 bars) or None to infer "
                f"it from the returns' timestamps, got {bars_per_year}"
            )
        if rolling_window < 2:
            raise ValueError(f"rolling_window must be at least 2 bars (a std needs two points), got {rolling_window}")
        # None: inferred per analysed series from its DatetimeIndex (252 when it has none); see ``frequency``.
        self.given_bars_per_year = None if bars_per_year is None else float(bars_per_year)
        self.frequency = frequency
        self.bars_per_year = DEFAULT_BARS_PER_YEAR if bars_per_year is None else float(bars_per_year)
        self.risk_free_rate = float(risk_free_rate)
        self.rolling_window = int(rolling_window)
        self.n_simulations = n_simulations
        self.seed = seed
        self.confidence_levels = tuple(confidence_levels)
        self.block_size = block_size

    @property
    def rf_per_bar(self) -> float:
        return float((1.0 + self.risk_free_rate) ** (1.0 / self.bars_per_year) - 1.0)

    def analyze_comprehensive(
        self,
        result: Any,
        *,
        kind: SeriesKind = "auto",
        n_simulations: int | None = None,
        seed: int | Literal["default"] | None = "default",
        block_size: int | Literal["default"] | None = "default",
    ) -> PerformanceAnalysis:
        """Every metric of the module docstring for ``result`` (returns, equity, or a SimulationResult).

        The annualisation is the analyzer's ``bars_per_year`` when given, else inferred from the timestamps of
        ``result`` (its returns' DatetimeIndex); ``analysis.frequency`` says which.
        """
        returns = returns_from(result, kind=kind)
        frequency = self.frequency_of(returns)
        if frequency.bars_per_year != self.bars_per_year:
            return self._with_bars_per_year(frequency.bars_per_year).analyze_comprehensive(
                returns, kind="returns", n_simulations=n_simulations, seed=seed, block_size=block_size
            )
        r = returns.to_numpy(dtype=np.float64)
        dd = drawdown_series(returns)
        basic = self.basic_metrics(r, dd.to_numpy())
        ci = bootstrap_confidence_intervals(
            r,
            n_simulations=self.n_simulations if n_simulations is None else n_simulations,
            seed=self.seed if seed == "default" else seed,
            confidence_levels=self.confidence_levels,
            block_size=self.block_size if block_size == "default" else block_size,
            bars_per_year=self.bars_per_year,
            risk_free_rate=self.risk_free_rate,
        )
        return PerformanceAnalysis(
            basic_metrics=basic,
            risk_metrics=self.risk_metrics(r),
            drawdown_analysis=self.drawdown_analysis(returns, dd),
            rolling_metrics=self.rolling_metrics(returns),
            confidence_intervals=ci.to_dict(),
            n_periods=int(r.size),
            drawdown_series=dd,
            frequency=frequency,
            returns=returns,
            rolling_window=self.rolling_window,
        )

    def frequency_of(self, returns: pd.Series) -> BarFrequency:
        """The annualisation used for ``returns``: given, inferred from a DatetimeIndex, or the 252 default."""
        if self.frequency is not None:
            return self.frequency
        stamps = returns.index if isinstance(returns.index, pd.DatetimeIndex) and len(returns) >= 2 else None
        return resolve_frequency(stamps, self.given_bars_per_year)

    def _with_bars_per_year(self, bars_per_year: float) -> AdvancedPerformanceAnalyzer:
        clone = copy.copy(self)
        clone.bars_per_year = float(bars_per_year)
        return clone

    def basic_metrics(self, r: FloatArray, drawdown: FloatArray) -> dict[str, float]:
        n = r.size
        total = float(np.prod(1.0 + r) - 1.0) if n else 0.0
        if n == 0:
            annual = math.nan
        elif total <= -1.0:
            annual = -1.0
        else:
            # Short, strong samples annualise past float range: that is +inf, not an OverflowError.
            with np.errstate(over="ignore"):
                annual = float(np.expm1(np.log1p(total) * (self.bars_per_year / n)))
        sqrt_bpy = math.sqrt(self.bars_per_year)
        excess = r - self.rf_per_bar
        std = float(r.std(ddof=1)) if n > 1 else math.nan
        mean_excess = float(excess.mean()) if n else math.nan
        excess_std = float(excess.std(ddof=1)) if n > 1 else math.nan
        sharpe = mean_excess / excess_std * sqrt_bpy if _has_dispersion(excess_std, mean_excess) else math.nan
        downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2))) if n else math.nan
        sortino = mean_excess / downside * sqrt_bpy if n and downside > 0 else math.nan
        max_dd = float(drawdown.min()) if n else 0.0
        calmar = annual / abs(max_dd) if max_dd < -_UNDERWATER_TOLERANCE else math.nan
        return {
            "total_return": total,
            "annualized_return": annual,
            "volatility": _volatility(r, std) * sqrt_bpy,
            "sharpe_ratio": float(sharpe),
            "sortino_ratio": float(sortino),
            "calmar_ratio": float(calmar),
        }

    def risk_metrics(self, r: FloatArray) -> dict[str, float]:
        n = r.size
        var = float(np.quantile(r, 0.05)) if n else math.nan
        cvar = float(r[r <= var].mean()) if n else math.nan
        series = pd.Series(r)
        return {
            "var_95": var,
            "cvar_95": cvar,
            "skewness": float(series.skew()) if n > 2 else math.nan,
            "kurtosis": float(series.kurt()) if n > 3 else math.nan,
            "max_consecutive_losses": max_consecutive_losses(r),
            "win_rate": float((r > 0).mean()) if n else math.nan,
            "best_period": float(r.max()) if n else math.nan,
            "worst_period": float(r.min()) if n else math.nan,
        }

    def drawdown_analysis(self, returns: pd.Series, drawdown: pd.Series) -> dict[str, Any]:
        dd = drawdown.to_numpy(dtype=np.float64)
        n = dd.size
        episodes = drawdown_episodes(dd)
        longest = max(episodes, key=lambda e: e.length, default=None)
        duration: pd.Timedelta | None = None
        if longest is not None and isinstance(returns.index, pd.DatetimeIndex):
            stop = min(longest.end, n - 1)
            duration = pd.Timedelta(returns.index[stop] - returns.index[longest.start])
        return {
            "max_drawdown": float(dd.min()) if n else 0.0,
            "avg_drawdown": float(np.mean([e.trough for e in episodes])) if episodes else 0.0,
            "time_in_drawdown": float((dd < -_UNDERWATER_TOLERANCE).mean()) if n else math.nan,
            "num_drawdowns": len(episodes),
            "longest_drawdown_bars": longest.length if longest else 0,
            "longest_drawdown_duration": duration,
            "current_drawdown": float(dd[-1]) if n else 0.0,
            "recovered": bool(not episodes or episodes[-1].end < n),
        }

    def rolling_metrics(self, returns: pd.Series) -> dict[str, pd.Series]:
        window = self.rolling_window
        sqrt_bpy = math.sqrt(self.bars_per_year)
        excess = returns - self.rf_per_bar
        roll = excess.rolling(window, min_periods=window)
        mean = roll.mean()
        std = roll.std(ddof=1)
        # Flat windows: Sharpe undefined (NaN), not +/-inf.
        flat = std <= 1e-12 * np.maximum(1.0, mean.abs())
        sharpe = (mean / std * sqrt_bpy).mask(flat)
        vol = returns.rolling(window, min_periods=window).std(ddof=1) * sqrt_bpy
        return {
            "rolling_sharpe": sharpe.rename("rolling_sharpe"),
            "rolling_volatility": vol.rename("rolling_volatility"),
        }


def _volatility(r: FloatArray, std: float) -> float:
    # Constant returns: report exactly 0 rather than a few ulps.
    if r.size < 2:
        return math.nan
    return std if _has_dispersion(std, float(r.mean())) else 0.0


def _has_dispersion(std: float, mean: float) -> bool:
    # A constant series has a std of a few ulps rather than exactly 0.
    return bool(np.isfinite(std) and std > 1e-12 * max(1.0, abs(mean)))
