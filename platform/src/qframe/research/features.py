"""The built-in technical feature set, computed per symbol with no look-ahead.

Every feature at bar t is a function of that symbol's closes up to and including t only: rolling
windows end at t, exponential averages are recursive (``adjust=False``), and the regime label compares
volatility with an *expanding* quantile, never with a full-sample one. Each symbol is computed on
its own slice, so another symbol's bars (or future bars) cannot change a value, not even by rounding.

Conventions: volatility and z-score use the sample standard deviation (ddof=1); Bollinger bands use
the population one (ddof=0), as Bollinger defined them. RSI is Wilder's: the first average gain/loss
is the simple mean of the first ``rsi_window`` changes, then ``avg = avg * (n-1)/n + x/n``. MACD EMAs
start at the first close. Warm-up bars are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "return_1",
    "log_return_1",
    "volatility",
    "zscore",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_lower",
    "bb_pctb",
    "bb_bandwidth",
    "regime",
)

# Regime codes in the float ``regime`` column.
REGIME_DOWNTREND: Final = -1.0
REGIME_RANGE: Final = 0.0
REGIME_UPTREND: Final = 1.0
REGIME_VOLATILE: Final = 2.0
# Volatility above this expanding quantile of its own history marks the volatile regime.
REGIME_VOL_QUANTILE: Final = 0.8
# |momentum t-statistic| above this marks a trend.
REGIME_TREND_T: Final = 1.0


@dataclass(frozen=True)
class _Params:
    vol_window: int
    zscore_window: int
    rsi_window: int
    macd_fast: int
    macd_slow: int
    macd_signal: int
    bb_window: int
    bb_k: float
    bars_per_year: float


def compute_features(
    bars: pd.DataFrame,
    *,
    vol_window: int = 20,
    zscore_window: int = 20,
    rsi_window: int = 14,
    macd_fast: int = 12,
    macd_slow: int = 26,
    macd_signal: int = 9,
    bb_window: int = 20,
    bb_k: float = 2.0,
    bars_per_year: float = 252.0,
) -> pd.DataFrame:
    """Features for every bar: ``timestamp``, ``symbol`` and :data:`FEATURE_COLUMNS`, sorted by (symbol, timestamp).

    Needs ``timestamp``, ``symbol`` and ``close``; other columns are ignored. ``bars_per_year`` annualises
    volatility (252 for daily bars, 252*6.5 for US-equity hours, 365*24 for crypto hours).
    """
    params = _Params(
        vol_window=_window("vol_window", vol_window),
        zscore_window=_window("zscore_window", zscore_window),
        rsi_window=_window("rsi_window", rsi_window),
        macd_fast=_window("macd_fast", macd_fast, minimum=1),
        macd_slow=_window("macd_slow", macd_slow, minimum=1),
        macd_signal=_window("macd_signal", macd_signal, minimum=1),
        bb_window=_window("bb_window", bb_window),
        bb_k=float(bb_k),
        bars_per_year=float(bars_per_year),
    )
    if params.macd_fast >= params.macd_slow:
        raise ValueError(f"macd_fast ({macd_fast}) must be smaller than macd_slow ({macd_slow})")
    if not (np.isfinite(params.bb_k) and params.bb_k > 0):
        raise ValueError(f"bb_k must be a positive number of standard deviations, got {bb_k!r}")
    if not (np.isfinite(params.bars_per_year) and params.bars_per_year > 0):
        raise ValueError(f"bars_per_year must be positive, got {bars_per_year!r}")
    ordered = _ordered_input(bars)

    codes = ordered["symbol"].to_numpy()
    close = ordered["close"].to_numpy(dtype=np.float64)
    n = len(ordered)
    out = {name: np.full(n, np.nan) for name in FEATURE_COLUMNS}
    if n:
        starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
        ends = np.append(starts[1:], n)
        # One vectorised pass per symbol: values never mix across symbols, not even in rounding.
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            for name, values in _symbol_features(close[lo:hi], params).items():
                out[name][lo:hi] = values

    result = ordered[["timestamp", "symbol"]].reset_index(drop=True)
    for name in FEATURE_COLUMNS:
        result[name] = out[name]
    return result


def _window(name: str, value: int, *, minimum: int = 2) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _ordered_input(bars: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("timestamp", "symbol", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}; compute_features needs timestamp, symbol and close")
    if not pd.api.types.is_numeric_dtype(bars["close"].dtype):
        raise ValueError(
            f"close has dtype {bars['close'].dtype}, expected float64: use bars['close'].astype('float64')"
        )
    if not pd.api.types.is_datetime64_any_dtype(bars["timestamp"].dtype):
        raise ValueError(
            f"timestamp has dtype {bars['timestamp'].dtype}, expected datetime64[ns, UTC]: "
            "parse it with pd.to_datetime(bars['timestamp'], utc=True)"
        )
    frame = bars[["timestamp", "symbol", "close"]]
    duplicated = frame.duplicated(["symbol", "timestamp"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise ValueError(
            f"bars have {int(duplicated.sum())} duplicate (symbol, timestamp) rows, first {first['symbol']!r} at "
            f"{first['timestamp']}; drop them (bars.drop_duplicates(['symbol', 'timestamp'])) before computing features"
        )
    return frame.sort_values(["symbol", "timestamp"], kind="stable")


def _symbol_features(close_values: np.ndarray, p: _Params) -> dict[str, np.ndarray]:
    close = pd.Series(close_values)
    position = np.arange(len(close))
    log_close = np.log(close)
    log_ret = log_close.diff()
    features: dict[str, pd.Series | np.ndarray] = {
        "return_1": close.pct_change(fill_method=None),
        "log_return_1": log_ret,
    }

    bar_vol = log_ret.rolling(p.vol_window, min_periods=p.vol_window).std(ddof=1)
    features["volatility"] = bar_vol * np.sqrt(p.bars_per_year)

    z_mean = close.rolling(p.zscore_window, min_periods=p.zscore_window).mean()
    z_std = close.rolling(p.zscore_window, min_periods=p.zscore_window).std(ddof=1)
    features["zscore"] = _ratio(close - z_mean, z_std)

    features["rsi"] = _wilder_rsi(close, position, p.rsi_window)

    ema_fast = close.ewm(span=p.macd_fast, adjust=False).mean()
    ema_slow = close.ewm(span=p.macd_slow, adjust=False).mean()
    macd = (ema_fast - ema_slow).where(position >= p.macd_slow - 1)
    signal = macd.ewm(span=p.macd_signal, adjust=False).mean().where(position >= p.macd_slow + p.macd_signal - 2)
    features["macd"], features["macd_signal"], features["macd_hist"] = macd, signal, macd - signal

    bb_mid = close.rolling(p.bb_window, min_periods=p.bb_window).mean()
    bb_std = close.rolling(p.bb_window, min_periods=p.bb_window).std(ddof=0)
    upper, lower = bb_mid + p.bb_k * bb_std, bb_mid - p.bb_k * bb_std
    features["bb_upper"], features["bb_lower"] = upper, lower
    features["bb_pctb"] = _ratio(close - lower, upper - lower)
    features["bb_bandwidth"] = _ratio(upper - lower, bb_mid)

    features["regime"] = _regime(log_close, bar_vol, p.vol_window)
    return {name: np.asarray(values, dtype=np.float64) for name, values in features.items()}


def _ratio(numerator: pd.Series, denominator: pd.Series) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (a flat window has no z-score or %b)."""
    num = numerator.to_numpy(dtype=np.float64)
    den = denominator.to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / den, np.nan)


def _wilder_rsi(close: pd.Series, position: np.ndarray, window: int) -> np.ndarray:
    change = close.diff()
    averages = []
    for moves in (change.clip(lower=0.0), (-change).clip(lower=0.0)):
        seed = moves.rolling(window, min_periods=window).mean()
        # The EMA starts at the simple mean of the first `window` changes (bar `window`), then recurses.
        seeded = moves.where(position > window, seed.where(position == window))
        averages.append(seeded.ewm(alpha=1.0 / window, adjust=False).mean().to_numpy(dtype=np.float64))
    gain, loss = averages
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    rsi = np.where((loss == 0) & (gain > 0), 100.0, rsi)
    rsi = np.where((loss == 0) & (gain == 0), 50.0, rsi)
    return np.where(position >= window, rsi, np.nan)


def _regime(log_close: pd.Series, bar_vol: pd.Series, window: int) -> np.ndarray:
    """-1/0/1 for down/range/up trend by momentum t-statistic, 2 when volatility is high for this symbol so far."""
    vol_threshold = bar_vol.expanding(min_periods=window).quantile(REGIME_VOL_QUANTILE)
    momentum_t = _ratio(log_close - log_close.shift(window), bar_vol * np.sqrt(window))
    vol = bar_vol.to_numpy(dtype=np.float64)
    threshold = vol_threshold.to_numpy(dtype=np.float64)
    regime = np.where(
        momentum_t > REGIME_TREND_T,
        REGIME_UPTREND,
        np.where(momentum_t < -REGIME_TREND_T, REGIME_DOWNTREND, REGIME_RANGE),
    )
    regime = np.where(vol > threshold, REGIME_VOLATILE, regime)
    known = np.isfinite(momentum_t) & np.isfinite(threshold)
    return np.where(known, regime, np.nan)
