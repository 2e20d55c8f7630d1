"""Bootstrap (Monte Carlo) confidence intervals for total return and Sharpe ratio.

Resamples the observed periodic returns with replacement -- bar by bar (i.i.d.) or in circular blocks of
``block_size`` bars, which keeps short-range autocorrelation and volatility clustering inside each block -- and
reads percentile intervals off the resampled statistics. Everything is vectorised over simulations with a
``numpy.random.Generator``; simulations are processed in chunks so a long series never materialises an
``n_simulations x n_bars`` matrix larger than ``_MAX_CHUNK_ELEMENTS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_CONFIDENCE_LEVELS: tuple[float, ...] = (0.95, 0.75)
# ~32 MB of float64 per chunk: bounded memory whatever the series length.
_MAX_CHUNK_ELEMENTS = 4_000_000
_ZERO_VARIANCE_RELATIVE = 1e-10


def level_label(level: float) -> str:
    """``0.95 -> "95%"``, ``0.975 -> "97.5%"`` (the seed's dictionary keys)."""
    return f"{level * 100:g}%"


@dataclass(frozen=True)
class MonteCarloResult:
    """Percentile intervals of the bootstrapped statistics, keyed by level label (``"95%"``, ``"75%"``)."""

    total_return: dict[str, tuple[float, float]]
    sharpe_ratio: dict[str, tuple[float, float]]
    n_simulations: int
    seed: int | None
    block_size: int | None
    n_periods: int
    method: str = field(default="percentile bootstrap")

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_return": dict(self.total_return),
            "sharpe_ratio": dict(self.sharpe_ratio),
            "n_simulations": self.n_simulations,
            "seed": self.seed,
            "block_size": self.block_size,
            "n_periods": self.n_periods,
            "method": self.method,
        }


def _validate(
    returns: FloatArray, n_simulations: int, confidence_levels: Sequence[float], block_size: int | None
) -> None:
    if returns.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {returns.shape}; pass a single return series")
    if not np.all(np.isfinite(returns)):
        raise ValueError("returns contain NaN or infinite values; drop them (e.g. returns.dropna()) before resampling")
    if n_simulations < 1:
        raise ValueError(f"n_simulations must be >= 1, got {n_simulations}")
    for level in confidence_levels:
        if not 0.0 < level < 1.0:
            raise ValueError(f"confidence level {level!r} is outside (0, 1); use e.g. 0.95 for a 95% interval")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be a positive number of bars or None (i.i.d. bootstrap), got {block_size}")


def _resample_indices(rng: np.random.Generator, n: int, n_sims: int, block_size: int | None) -> npt.NDArray[np.intp]:
    if block_size is None or block_size == 1:
        return rng.integers(0, n, size=(n_sims, n))
    block = min(block_size, n)
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_sims, n_blocks))
    # Circular blocks: every bar is equally likely to be drawn, including those near the end.
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(n_sims, n_blocks * block)[:, :n]


def bootstrap_statistics(
    returns: npt.ArrayLike,
    *,
    n_simulations: int = 1000,
    seed: int | None = 0,
    block_size: int | None = None,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """Total return and annualised Sharpe of each of ``n_simulations`` resampled paths.

    Sharpe uses the sample standard deviation (ddof=1); a resampled path with zero dispersion gives NaN.
    """
    r = np.asarray(returns, dtype=np.float64)
    _validate(r, n_simulations, DEFAULT_CONFIDENCE_LEVELS, block_size)
    n = r.size
    totals = np.full(n_simulations, np.nan)
    sharpes = np.full(n_simulations, np.nan)
    if n == 0:
        return totals, sharpes
    rng = np.random.default_rng(seed)
    # log1p/expm1 keep compounding accurate over long series; a bar losing 100% or more has no log.
    log_growth = np.log1p(r) if bool((r > -1.0).all()) else None
    rf_per_bar = (1.0 + risk_free_rate) ** (1.0 / bars_per_year) - 1.0
    centre = float(r.mean())
    centred = r - centre
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    for lo in range(0, n_simulations, chunk):
        hi = min(n_simulations, lo + chunk)
        idx = _resample_indices(rng, n, hi - lo, block_size)
        if log_growth is not None:
            totals[lo:hi] = np.expm1(log_growth[idx].sum(axis=1))
        else:
            totals[lo:hi] = np.prod(1.0 + r[idx], axis=1) - 1.0
        if n > 1:
            # One gather and two reductions instead of mean + std temporaries: this loop is the whole cost.
            # Centring on the sample mean first keeps the sum-of-squares variance numerically stable.
            x = centred[idx]
            s1 = x.sum(axis=1)
            s2 = np.einsum("ij,ij->i", x, x)
            mean_c = s1 / n
            var = np.maximum(s2 - s1 * mean_c, 0.0) / (n - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                sharpe = (mean_c + centre - rf_per_bar) / np.sqrt(var) * math.sqrt(bars_per_year)
            # A path drawn from one value has a variance of a few ulps of s2, not 0: call that no dispersion.
            sharpe[var <= _ZERO_VARIANCE_RELATIVE * s2 / n] = np.nan
            sharpes[lo:hi] = sharpe
    return totals, sharpes


def percentile_intervals(samples: FloatArray, levels: Sequence[float]) -> dict[str, tuple[float, float]]:
    """Equal-tailed percentile intervals; NaN samples are ignored; all-NaN gives (nan, nan)."""
    finite = samples[np.isfinite(samples)]
    out: dict[str, tuple[float, float]] = {}
    for level in levels:
        if finite.size == 0:
            out[level_label(level)] = (math.nan, math.nan)
            continue
        tail = (1.0 - level) / 2.0
        lo, hi = np.quantile(finite, [tail, 1.0 - tail])
        out[level_label(level)] = (float(lo), float(hi))
    return out


def bootstrap_confidence_intervals(
    returns: npt.ArrayLike,
    *,
    n_simulations: int = 1000,
    seed: int | None = 0,
    confidence_levels: Sequence[float] = DEFAULT_CONFIDENCE_LEVELS,
    block_size: int | None = None,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> MonteCarloResult:
    """Bootstrap confidence intervals of total return and Sharpe ratio.

    Same ``seed`` and inputs give identical intervals; ``seed=None`` draws fresh entropy. ``block_size=None``
    resamples single bars (i.i.d.); an integer resamples circular blocks of that many bars.
    """
    r = np.asarray(returns, dtype=np.float64)
    _validate(r, n_simulations, confidence_levels, block_size)
    totals, sharpes = bootstrap_statistics(
        r,
        n_simulations=n_simulations,
        seed=seed,
        block_size=block_size,
        bars_per_year=bars_per_year,
        risk_free_rate=risk_free_rate,
    )
    return MonteCarloResult(
        total_return=percentile_intervals(totals, confidence_levels),
        sharpe_ratio=percentile_intervals(sharpes, confidence_levels),
        n_simulations=n_simulations,
        seed=seed,
        block_size=block_size,
        n_periods=int(r.size),
        method="percentile bootstrap" if block_size in (None, 1) else "circular block percentile bootstrap",
    )
