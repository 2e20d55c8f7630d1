"""Numba kernels: rolling indicators, stateful signal machines and the fused simulation/metrics loop.

Simulation semantics (the bar-by-bar reference in ``tests/harness/bt_reference.py`` does exactly this):

- ``r[t] = close[t] / close[t-1] - 1`` for ``t >= 1``, ``r[0] = 0``.
- A strategy's target ``s[t]`` in [-1, 1] is decided at the close of bar ``t`` from data up to ``t``.
- It is executed at that close and held over the next bar: the position held during bar ``t`` is
  ``p[t] = s[t-1]`` (next-bar execution; ``p[0] = 0``).
- A window ``[start, end)`` starts flat with ``initial_capital``: the position held before ``start`` counts
  as 0, so a position already signalled at ``start - 1`` (from warm-up history) is entered, and charged, in
  bar ``start``. Bars before ``start`` only feed indicators; bars at or after ``end`` are never read.
- Bar return of the strategy: ``R[t] = p[t] * r[t] - rate * |p[t] - p[t-1]|`` (costs proportional to the
  traded notional, as a fraction of equity at the trade), equity ``E[t] = E[t-1] * (1 + R[t])``.
- Drawdown ``E[t] / max(initial_capital, E[..t]) - 1``; a trade is a bar whose position differs from the
  previous one; exposure counts bars with ``p[t] != 0``.

Kernels return raw accumulators per combination (never an equity curve per combination) so memory stays
flat in the number of bars x combinations; :mod:`qframe.research.backtesting.evaluate` turns them into metrics.
The fused kernels walk bars in chunks and all combinations per chunk, so the price and indicator slices stay
in cache while every combination advances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

# Accumulator columns returned by the simulation kernels.
ACC_FINAL_EQUITY = 0
ACC_SUM = 1
ACC_SUMSQ = 2
ACC_DOWNSIDE_SUMSQ = 3
ACC_MAX_DRAWDOWN = 4
ACC_TRADES = 5
ACC_EXPOSED_BARS = 6
N_ACC = 7

CHUNK_BARS = 2048


def _jit(fn: F) -> F:
    # cache=True: later processes (Dask/Ray workers, the next notebook session) load the compiled code.
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


@_jit
def bar_returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close returns, 0 on the first bar."""
    n = close.shape[0]
    out = np.zeros(n)
    for t in range(1, n):
        out[t] = close[t] / close[t - 1] - 1.0
    return out


# Below this ratio of (sum of squared deviations) / (sum of squares around the anchor) more than six of the
# sixteen digits cancelled: the rolling std recomputes that window exactly.
_CANCELLATION = 1e-6


@_jit
def _two_pass_spread(x: np.ndarray, i0: int, i1: int, approx_mean: float) -> float:
    """Sum of squared deviations of ``x[i0:i1]`` from its mean, computed around an already close mean."""
    shift = 0.0
    for i in range(i0, i1):
        shift += x[i] - approx_mean
    mean = approx_mean + shift / (i1 - i0)
    total = 0.0
    for i in range(i0, i1):
        d = x[i] - mean
        total += d * d
    return total


@_jit
def rolling_moments_span(  # noqa: PLR0917
    x: np.ndarray, window: int, t0: int, t1: int, mean_out: np.ndarray, std_out: np.ndarray, with_std: bool
) -> None:
    """Trailing mean (and sample std, ddof=1) over ``x[t-window+1 .. t]`` for ``t`` in ``[t0, t1)``.

    Writes ``mean_out[t - t0]`` / ``std_out[t - t0]`` (NaN before the window fills). Sliding sums are taken
    around an anchor and recomputed exactly whenever ``t + 1`` is a multiple of ``window``, so rounding stays
    at the size of one window instead of growing with the series (a cumsum would not). The anchors depend on
    ``t`` only, never on ``t0``: any span gives bit-for-bit the values of the whole-series computation, which
    lets the fused kernels build indicators chunk by chunk.
    """
    first = max(t0, window - 1)
    for t in range(t0, min(first, t1)):
        mean_out[t - t0] = np.nan
        if with_std:
            std_out[t - t0] = np.nan
    if window < 1 or first >= t1:
        return
    # Replay from the last exact recomputation at or before `first`, writing nothing until `first`.
    t = window - 1 + ((first - (window - 1)) // window) * window
    anchor = 0.0
    s1 = 0.0
    s2 = 0.0
    while t < t1:
        if (t - window + 1) % window == 0:
            anchor = x[t - window + 1]
            s1 = 0.0
            s2 = 0.0
            for i in range(t - window + 1, t + 1):
                d = x[i] - anchor
                s1 += d
                s2 += d * d
        else:
            d_in = x[t] - anchor
            d_out = x[t - window] - anchor
            s1 += d_in - d_out
            s2 += d_in * d_in - d_out * d_out
        if t >= first:
            m = s1 / window
            mean_out[t - t0] = anchor + m
            if with_std:
                if window > 1:
                    spread = s2 - s1 * m
                    if spread <= _CANCELLATION * s2:
                        # Prices sit far from the anchor relative to their spread: the difference above has
                        # lost most digits, so take this window's variance the two-pass way.
                        spread = _two_pass_spread(x, t - window + 1, t + 1, anchor + m)
                    std_out[t - t0] = math.sqrt(spread / (window - 1)) if spread > 0.0 else 0.0
                else:
                    std_out[t - t0] = np.nan
        t += 1


@_jit
def rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and sample std (ddof=1) over ``x[t-window+1 .. t]``; NaN before the window fills."""
    n = x.shape[0]
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    rolling_moments_span(x, window, 0, n, mean, std, True)
    return mean, std


@_jit
def rolling_extreme_span(  # noqa: PLR0917
    x: np.ndarray, window: int, take_max: bool, t0: int, t1: int, out: np.ndarray
) -> None:
    """Trailing max (or min) over ``x[t-window+1 .. t]`` into ``out[t - t0]`` for ``t`` in ``[t0, t1)``.

    A monotonic deque started ``window - 1`` bars before ``t0``; NaN before the window fills. Extremes are
    exact, so any span equals the whole-series values.
    """
    first = max(0, t0 - window + 1)
    dq = np.empty(t1 - first, dtype=np.int64)
    head = 0
    tail = 0
    for t in range(first, t1):
        while tail > head and ((x[dq[tail - 1]] <= x[t]) if take_max else (x[dq[tail - 1]] >= x[t])):
            tail -= 1
        dq[tail] = t
        tail += 1
        if dq[head] <= t - window:
            head += 1
        if t >= t0:
            out[t - t0] = x[dq[head]] if t >= window - 1 else np.nan


@_jit
def rolling_extreme(x: np.ndarray, window: int, take_max: bool) -> np.ndarray:
    """Trailing max (or min) over ``x[t-window+1 .. t]``; NaN before the window fills."""
    out = np.empty(x.shape[0])
    rolling_extreme_span(x, window, take_max, 0, x.shape[0], out)
    return out


@_jit
def _new_accumulators(n_combos: int, initial_capital: float) -> np.ndarray:
    acc = np.zeros((n_combos, N_ACC))
    for j in range(n_combos):
        acc[j, ACC_FINAL_EQUITY] = initial_capital
    return acc


@_jit
def _accumulate(  # noqa: PLR0917 - a numba kernel takes plain arrays and scalars
    acc: np.ndarray,
    j: int,
    positions: np.ndarray,
    returns: np.ndarray,
    t0: int,
    t1: int,
    prev_position: float,
    peak: float,
    rate: float,
) -> tuple[float, float]:
    """Advance combination ``j`` over bars ``t0..t1-1`` held at ``positions[t - t0]``; returns (last position, peak)."""
    equity = acc[j, ACC_FINAL_EQUITY]
    s1 = acc[j, ACC_SUM]
    s2 = acc[j, ACC_SUMSQ]
    down = acc[j, ACC_DOWNSIDE_SUMSQ]
    max_dd = acc[j, ACC_MAX_DRAWDOWN]
    trades = acc[j, ACC_TRADES]
    exposed = acc[j, ACC_EXPOSED_BARS]
    prev = prev_position
    for t in range(t0, t1):
        p = positions[t - t0]
        traded = abs(p - prev)
        ret = p * returns[t] - rate * traded
        equity *= 1.0 + ret
        s1 += ret
        s2 += ret * ret
        if ret < 0.0:
            down += ret * ret
        if traded != 0.0:
            trades += 1.0
        if p != 0.0:
            exposed += 1.0
        peak = max(peak, equity)
        dd = equity / peak - 1.0
        max_dd = min(max_dd, dd)
        prev = p
    acc[j, ACC_FINAL_EQUITY] = equity
    acc[j, ACC_SUM] = s1
    acc[j, ACC_SUMSQ] = s2
    acc[j, ACC_DOWNSIDE_SUMSQ] = down
    acc[j, ACC_MAX_DRAWDOWN] = max_dd
    acc[j, ACC_TRADES] = trades
    acc[j, ACC_EXPOSED_BARS] = exposed
    return prev, peak


@_jit
def simulate_targets(  # noqa: PLR0917 - a numba kernel takes plain arrays and scalars
    targets: np.ndarray, returns: np.ndarray, start: int, end: int, rate: float, initial_capital: float
) -> np.ndarray:
    """Accumulators of each column of ``targets`` (n_bars, n_combos: s[t]) over the window ``[start, end)``."""
    n_combos = targets.shape[1]
    acc = _new_accumulators(n_combos, initial_capital)
    held = np.empty(min(CHUNK_BARS, end - start))
    prev = np.zeros(n_combos)
    peak = np.full(n_combos, initial_capital)
    for c0 in range(start, end, CHUNK_BARS):
        c1 = min(c0 + CHUNK_BARS, end)
        for j in range(n_combos):
            for t in range(c0, c1):
                held[t - c0] = targets[t - 1, j] if t >= 1 else 0.0
            prev[j], peak[j] = _accumulate(acc, j, held, returns, c0, c1, prev[j], peak[j], rate)
    return acc


@_jit
def ma_crossover_targets(
    means: np.ndarray, fast_row: np.ndarray, slow_row: np.ndarray, ready: np.ndarray, allow_short: np.ndarray
) -> np.ndarray:
    """Targets (n_bars, n_combos): +1 when the fast mean is above the slow one, -1 below (if shorting), else 0."""
    n = means.shape[1]
    n_combos = fast_row.shape[0]
    out = np.zeros((n, n_combos))
    for t in range(n):
        for j in range(n_combos):
            if t >= ready[j]:
                f = means[fast_row[j], t]
                s = means[slow_row[j], t]
                if f > s:
                    out[t, j] = 1.0
                elif allow_short[j] and f < s:
                    out[t, j] = -1.0
    return out


@_jit
def ma_crossover_fused(  # noqa: PLR0917
    close: np.ndarray,
    windows: np.ndarray,
    fast_row: np.ndarray,
    slow_row: np.ndarray,
    ready: np.ndarray,
    allow_short: np.ndarray,
    returns: np.ndarray,
    start: int,
    end: int,
    rate: float,
    initial_capital: float,
) -> np.ndarray:
    """The moving-average crossover decided and simulated in one pass; same numbers as targets + simulate.

    The moving averages (one per distinct window) are computed per chunk of bars, so memory is a
    chunk-sized table whatever the series length or the number of windows.
    """
    n_combos = fast_row.shape[0]
    n_windows = windows.shape[0]
    acc = _new_accumulators(n_combos, initial_capital)
    chunk = min(CHUNK_BARS, end - start)
    held = np.empty(chunk)
    means = np.empty((n_windows, chunk))
    unused = np.empty(0)
    prev = np.zeros(n_combos)
    peak = np.full(n_combos, initial_capital)
    for c0 in range(start, end, CHUNK_BARS):
        c1 = min(c0 + CHUNK_BARS, end)
        # Bar t holds the target decided at t-1: means of bars [c0-1, c1-1); row 0 stands for bar c0-1.
        m0 = max(c0 - 1, 0)
        for k in range(n_windows):
            rolling_moments_span(close, windows[k], m0, c1 - 1, means[k], unused, False)
        for j in range(n_combos):
            fast = means[fast_row[j]]
            slow = means[slow_row[j]]
            first = ready[j] + 1
            short = allow_short[j]
            for t in range(c0, c1):
                p = 0.0
                if t >= first:
                    f = fast[t - 1 - m0]
                    s = slow[t - 1 - m0]
                    if f > s:
                        p = 1.0
                    elif short and f < s:
                        p = -1.0
                held[t - c0] = p
            prev[j], peak[j] = _accumulate(acc, j, held, returns, c0, c1, prev[j], peak[j], rate)
    return acc


@_jit
def _mean_reversion_step(  # noqa: PLR0917
    position: float, price: float, mean: float, std: float, vol_short: float, vol_long: float, z_entry_base: float
) -> float:
    """One bar of the mean-reversion state machine: the position wanted after this bar's close."""
    if std > 0.0 and vol_long > 0.0:
        z = (price - mean) / std
        ratio = min(max(vol_short / vol_long, 0.5), 2.0)
        threshold = z_entry_base * ratio
        if (position > 0.0 and z >= 0.0) or (position < 0.0 and z <= 0.0):
            position = 0.0
        if position == 0.0:
            if z < -threshold:
                position = 1.0
            elif z > threshold:
                position = -1.0
    return position


@_jit
def _breakout_step(  # noqa: PLR0917
    position: float, price: float, upper: float, lower: float, exit_high: float, exit_low: float, allow_short: bool
) -> float:
    """One bar of the Donchian breakout state machine (channels end at the previous bar)."""
    if (position > 0.0 and price < exit_low) or (position < 0.0 and price > exit_high):
        position = 0.0
    if position == 0.0:
        if price > upper:
            position = 1.0
        elif allow_short and price < lower:
            position = -1.0
    return position


@_jit
def mean_reversion_targets(  # noqa: PLR0917
    close: np.ndarray,
    price_mean: np.ndarray,
    price_std: np.ndarray,
    vol_short: np.ndarray,
    vol_long: np.ndarray,
    row_short: np.ndarray,
    row_long: np.ndarray,
    lookback_long: np.ndarray,
    z_entry_base: np.ndarray,
) -> np.ndarray:
    """Z-score mean reversion with a volatility-adaptive entry; exit when z crosses 0. See the strategy doc."""
    n = close.shape[0]
    n_combos = row_short.shape[0]
    out = np.zeros((n, n_combos))
    for j in range(n_combos):
        mean = price_mean[row_long[j]]
        std = price_std[row_long[j]]
        vs = vol_short[row_short[j]]
        vl = vol_long[row_long[j]]
        pos = 0.0
        for t in range(lookback_long[j], n):
            pos = _mean_reversion_step(pos, close[t], mean[t], std[t], vs[t], vl[t], z_entry_base[j])
            out[t, j] = pos
    return out


@_jit
def breakout_targets(  # noqa: PLR0917
    close: np.ndarray,
    highs: np.ndarray,
    lows: np.ndarray,
    row_entry: np.ndarray,
    row_exit: np.ndarray,
    lookback: np.ndarray,
    allow_short: np.ndarray,
) -> np.ndarray:
    """Donchian breakout: enter beyond the previous ``lookback`` bars' range, exit beyond the exit range."""
    n = close.shape[0]
    n_combos = row_entry.shape[0]
    out = np.zeros((n, n_combos))
    for j in range(n_combos):
        upper = highs[row_entry[j]]
        lower = lows[row_entry[j]]
        exit_high = highs[row_exit[j]]
        exit_low = lows[row_exit[j]]
        pos = 0.0
        for t in range(lookback[j], n):
            # Channels end at t-1: the bar being tested is not part of its own range.
            pos = _breakout_step(
                pos, close[t], upper[t - 1], lower[t - 1], exit_high[t - 1], exit_low[t - 1], allow_short[j]
            )
            out[t, j] = pos
    return out


@_jit
def equity_path(  # noqa: PLR0917
    targets: np.ndarray, returns: np.ndarray, start: int, end: int, rate: float, initial_capital: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bar equity, strategy returns and held positions of one combination over ``[start, end)``."""
    n = end - start
    equity = np.empty(n)
    rets = np.empty(n)
    held = np.empty(n)
    e = initial_capital
    prev = 0.0
    for t in range(start, end):
        p = targets[t - 1] if t >= 1 else 0.0
        ret = p * returns[t] - rate * abs(p - prev)
        e *= 1.0 + ret
        equity[t - start] = e
        rets[t - start] = ret
        held[t - start] = p
        prev = p
    return equity, rets, held


@_jit
def mean_reversion_fused(  # noqa: PLR0917
    close: np.ndarray,
    returns: np.ndarray,
    long_windows: np.ndarray,
    short_windows: np.ndarray,
    row_short: np.ndarray,
    row_long: np.ndarray,
    z_entry_base: np.ndarray,
    start: int,
    end: int,
    rate: float,
    initial_capital: float,
) -> np.ndarray:
    """Adaptive mean reversion decided and simulated chunk by chunk; same numbers as targets + simulate.

    The state machine runs from the first bar (its state depends on all history); P&L counts only
    ``[start, end)``. Indicators are built per chunk, so memory does not grow with the series.
    """
    n_combos = row_short.shape[0]
    n_long = long_windows.shape[0]
    n_short = short_windows.shape[0]
    acc = _new_accumulators(n_combos, initial_capital)
    chunk = min(CHUNK_BARS, end)
    price_mean = np.empty((n_long, chunk))
    price_std = np.empty((n_long, chunk))
    vol_long = np.empty((n_long, chunk))
    vol_short = np.empty((n_short, chunk))
    scratch = np.empty(chunk)
    held = np.empty(chunk)
    state = np.zeros(n_combos)
    prev = np.zeros(n_combos)
    peak = np.full(n_combos, initial_capital)
    for c0 in range(0, end, CHUNK_BARS):
        c1 = min(c0 + CHUNK_BARS, end)
        for k in range(n_long):
            rolling_moments_span(close, long_windows[k], c0, c1, price_mean[k], price_std[k], True)
            rolling_moments_span(returns, long_windows[k], c0, c1, scratch, vol_long[k], True)
        for k in range(n_short):
            rolling_moments_span(returns, short_windows[k], c0, c1, scratch, vol_short[k], True)
        a0 = max(c0, start)
        for j in range(n_combos):
            lookback = long_windows[row_long[j]]
            mean = price_mean[row_long[j]]
            std = price_std[row_long[j]]
            vl = vol_long[row_long[j]]
            vs = vol_short[row_short[j]]
            position = state[j]
            for t in range(c0, c1):
                held[t - c0] = position  # the target decided at t-1 is held during t
                if t >= lookback:
                    i = t - c0
                    position = _mean_reversion_step(position, close[t], mean[i], std[i], vs[i], vl[i], z_entry_base[j])
            state[j] = position
            if a0 < c1:
                prev[j], peak[j] = _accumulate(acc, j, held[a0 - c0 :], returns, a0, c1, prev[j], peak[j], rate)
    return acc


@_jit
def breakout_fused(  # noqa: PLR0917
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    returns: np.ndarray,
    windows: np.ndarray,
    row_entry: np.ndarray,
    row_exit: np.ndarray,
    allow_short: np.ndarray,
    start: int,
    end: int,
    rate: float,
    initial_capital: float,
) -> np.ndarray:
    """Donchian breakout decided and simulated chunk by chunk; same numbers as targets + simulate."""
    n_combos = row_entry.shape[0]
    n_windows = windows.shape[0]
    acc = _new_accumulators(n_combos, initial_capital)
    chunk = min(CHUNK_BARS, end)
    highs = np.empty((n_windows, chunk))
    lows = np.empty((n_windows, chunk))
    held = np.empty(chunk)
    state = np.zeros(n_combos)
    prev = np.zeros(n_combos)
    peak = np.full(n_combos, initial_capital)
    for c0 in range(0, end, CHUNK_BARS):
        c1 = min(c0 + CHUNK_BARS, end)
        # Channels of bar t end at t-1: row 0 stands for bar c0-1 (bar 0 never trades: lookback >= 1).
        m0 = max(c0 - 1, 0)
        for k in range(n_windows):
            rolling_extreme_span(high, windows[k], True, m0, c1 - 1, highs[k])
            rolling_extreme_span(low, windows[k], False, m0, c1 - 1, lows[k])
        a0 = max(c0, start)
        for j in range(n_combos):
            lookback = windows[row_entry[j]]
            upper = highs[row_entry[j]]
            lower = lows[row_entry[j]]
            exit_high = highs[row_exit[j]]
            exit_low = lows[row_exit[j]]
            short = allow_short[j]
            position = state[j]
            for t in range(c0, c1):
                held[t - c0] = position
                if t >= lookback:
                    i = t - 1 - m0
                    position = _breakout_step(position, close[t], upper[i], lower[i], exit_high[i], exit_low[i], short)
            state[j] = position
            if a0 < c1:
                prev[j], peak[j] = _accumulate(acc, j, held[a0 - c0 :], returns, a0, c1, prev[j], peak[j], rate)
    return acc
