"""Plain bar-by-bar reference backtester: loops over Python floats, every indicator recomputed from its definition.

Slow on purpose and shares no code with ``qframe.research.backtesting``: tests compare the numba kernels
against it. Semantics (the contract documented in ``qframe.research.backtesting.kernels``):

- bar return r[t] = close[t] / close[t-1] - 1 (r[0] = 0);
- the target decided at the close of bar t is held during bar t+1;
- a window [start, end) starts flat with the initial capital, so a position wanted at start-1 is entered
  (and paid for) in bar start; bars at or after end are never looked at;
- strategy return R[t] = p[t] * r[t] - (commission + slippage) * |p[t] - p[t-1]|, equity compounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bars:
    """Plain lists of one symbol's prices."""

    high: list[float]
    low: list[float]
    close: list[float]


def _mean(values: Sequence[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1), two-pass."""
    mean = _mean(values)
    total = 0.0
    for value in values:
        total += (value - mean) ** 2
    return math.sqrt(total / (len(values) - 1))


def _bar_returns(close: Sequence[float]) -> list[float]:
    return [0.0] + [close[t] / close[t - 1] - 1.0 for t in range(1, len(close))]


def ma_crossover_targets(bars: Bars, params: Mapping[str, float]) -> list[float]:
    fast, slow, short = int(params["fast"]), int(params["slow"]), int(params["allow_short"])
    close = bars.close
    out = []
    for t in range(len(close)):
        target = 0.0
        if t >= max(fast, slow) - 1:
            fast_mean = _mean(close[t - fast + 1 : t + 1])
            slow_mean = _mean(close[t - slow + 1 : t + 1])
            if fast_mean > slow_mean:
                target = 1.0
            elif short == 1 and fast_mean < slow_mean:
                target = -1.0
        out.append(target)
    return out


def adaptive_mean_reversion_targets(bars: Bars, params: Mapping[str, float]) -> list[float]:
    short, long_, z_base = int(params["lookback_short"]), int(params["lookback_long"]), float(params["z_entry_base"])
    close = bars.close
    returns = _bar_returns(close)
    out = []
    position = 0.0
    for t in range(len(close)):
        if t >= long_:
            window = close[t - long_ + 1 : t + 1]
            price_std = _std(window)
            vol_long = _std(returns[t - long_ + 1 : t + 1])
            vol_short = _std(returns[t - short + 1 : t + 1])
            if price_std > 0.0 and vol_long > 0.0:
                z = (close[t] - _mean(window)) / price_std
                threshold = z_base * min(max(vol_short / vol_long, 0.5), 2.0)
                if position > 0.0 and z >= 0.0:
                    position = 0.0
                if position < 0.0 and z <= 0.0:
                    position = 0.0
                if position == 0.0:
                    if z < -threshold:
                        position = 1.0
                    elif z > threshold:
                        position = -1.0
        out.append(position if t >= long_ else 0.0)
    return out


def momentum_breakout_targets(bars: Bars, params: Mapping[str, float]) -> list[float]:
    lookback, exit_lookback, short = int(params["lookback"]), int(params["exit_lookback"]), int(params["allow_short"])
    out = []
    position = 0.0
    for t in range(len(bars.close)):
        if t >= lookback:
            price = bars.close[t]
            upper = max(bars.high[t - lookback : t])
            lower = min(bars.low[t - lookback : t])
            exit_high = max(bars.high[t - exit_lookback : t])
            exit_low = min(bars.low[t - exit_lookback : t])
            if position > 0.0 and price < exit_low:
                position = 0.0
            if position < 0.0 and price > exit_high:
                position = 0.0
            if position == 0.0:
                if price > upper:
                    position = 1.0
                elif short == 1 and price < lower:
                    position = -1.0
        out.append(position)
    return out


REFERENCE_TARGETS: dict[str, Callable[[Bars, Mapping[str, float]], list[float]]] = {
    "ma_crossover": ma_crossover_targets,
    "adaptive_mean_reversion": adaptive_mean_reversion_targets,
    "momentum_breakout": momentum_breakout_targets,
}


@dataclass(frozen=True)
class ReferenceRun:
    equity: list[float]
    returns: list[float]
    positions: list[float]
    metrics: dict[str, float]


def run_reference(
    targets: Sequence[float],
    close: Sequence[float],
    *,
    start: int,
    end: int,
    cost_rate: float,
    initial_capital: float,
    bars_per_year: float,
) -> ReferenceRun:
    """Trade ``targets`` bar by bar over [start, end) and compute every metric from the resulting lists."""
    equity_path: list[float] = []
    strategy_returns: list[float] = []
    positions: list[float] = []
    equity = initial_capital
    previous = 0.0
    for t in range(start, end):
        held = targets[t - 1] if t >= 1 else 0.0
        market = close[t] / close[t - 1] - 1.0 if t >= 1 else 0.0
        ret = held * market - cost_rate * abs(held - previous)
        equity = equity * (1.0 + ret)
        equity_path.append(equity)
        strategy_returns.append(ret)
        positions.append(held)
        previous = held
    return ReferenceRun(
        equity_path,
        strategy_returns,
        positions,
        reference_metrics(strategy_returns, equity_path, positions, initial_capital, bars_per_year),
    )


def reference_metrics(
    returns: Sequence[float],
    equity: Sequence[float],
    positions: Sequence[float],
    initial_capital: float,
    bars_per_year: float,
) -> dict[str, float]:
    n = len(returns)
    total = equity[-1] / initial_capital - 1.0
    annual = (1.0 + total) ** (bars_per_year / n) - 1.0 if total > -1.0 else -1.0
    mean = _mean(returns)
    std = _std(returns) if n > 1 else math.nan
    downside = math.sqrt(_mean([min(r, 0.0) ** 2 for r in returns]))
    peak = initial_capital
    max_drawdown = 0.0
    for value in equity:
        peak = max(peak, value)
        max_drawdown = min(max_drawdown, value / peak - 1.0)
    trades = 0
    previous = 0.0
    for position in positions:
        if position != previous:
            trades += 1
        previous = position
    return {
        "total_return": total,
        "annual_return": annual,
        "volatility": std * math.sqrt(bars_per_year),
        "sharpe": mean / std * math.sqrt(bars_per_year) if std > 0 else math.nan,
        "sortino": mean / downside * math.sqrt(bars_per_year) if downside > 0 else math.nan,
        "max_drawdown": max_drawdown,
        "n_trades": float(trades),
        "exposure": sum(1 for position in positions if position != 0.0) / n,
        "final_equity": equity[-1],
        "n_bars": float(n),
    }
