"""Evaluate a block of parameter combinations (``evaluate_task``) or one combination in full (``simulate``).

Metric conventions (per window of ``n`` bars with strategy returns ``R``; see
:mod:`qframe.research.backtesting.kernels` for the simulation itself), aligned with
:mod:`qframe.research.backtesting.analytics`:

- ``total_return`` = E_end / initial_capital - 1; ``annual_return`` = (1 + total)^(bars_per_year / n) - 1
  (-1 once the equity is wiped out).
- ``volatility`` = sample std of R (ddof=1) x sqrt(bars_per_year); ``sharpe`` = mean(R) / std(R) x
  sqrt(bars_per_year) (rf = 0); ``sortino`` = mean(R) / sqrt(mean(min(R, 0)^2)) x sqrt(bars_per_year).
  Undefined ratios (no dispersion, no losing bar, a single bar) are NaN, never 0 or inf.
- ``max_drawdown`` = min over the window of E_t / max(initial_capital, E_..t) - 1 (<= 0).
- ``n_trades`` = bars whose position differs from the previous one (entering at the window start counts);
  ``exposure`` = fraction of bars with a non-zero position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from qframe.research.backtesting import kernels
from qframe.research.backtesting.results import PARAM_PREFIX, SAMPLE_FULL, SAMPLE_IN, SAMPLE_OUT
from qframe.research.backtesting.strategies import (
    ParamBlock,
    Strategy,
    StrategyError,
    get_strategy,
    strategy_from_payload,
)
from qframe.research.backtesting.types import (
    BacktestTask,
    CostModel,
    MarketData,
    ParamValue,
    SimulationResult,
)
from qframe.research.bar_frequency import infer_bar_frequency

# Memory for one batch of strategy targets on the generic path (signals, then simulation).
TARGETS_BUDGET_BYTES = 64 * 2**20
# Below this relative size the variance of R is rounding noise of a constant return stream.
_VARIANCE_NOISE = 1e-14


def evaluate_task(task: BacktestTask, data: MarketData) -> pd.DataFrame:
    """Metrics of every combination of ``task`` on ``data``: one row per window and combination.

    Without a split the window is the whole series (``sample="full"``, ``split_id=-1``); with one, the
    in-sample rows (train window) of all combinations come first, then the out-of-sample rows (test window).
    Pure and deterministic: the same inputs give the same frame bit for bit.
    """
    if task.dataset != data.name:
        raise ValueError(f"task {task.task_id} is for dataset {task.dataset!r} but was given market data {data.name!r}")
    _check_capital(task.initial_capital, task.bars_per_year)
    strategy_cls = task_strategy(task)
    block = strategy_cls.param_block(task.params)
    if task.split is None:
        split_id = -1
        windows = [(SAMPLE_FULL, (0, len(data)))]
    else:
        split_id = task.split.split_id
        windows = [(sample, task.split.window(sample)) for sample in (SAMPLE_IN, SAMPLE_OUT)]
    spans = [span for _, span in windows]
    for start, end in spans:
        _check_window(start, end, len(data))
    accumulators = _accumulators(
        strategy_cls(), data, block, spans, rate=task.costs.rate, initial_capital=task.initial_capital
    )
    n_combos = next(iter(block.values())).size if block else len(task.params)
    frames = []
    for (sample, (start, end)), acc in zip(windows, accumulators, strict=True):
        columns: dict[str, object] = {
            "task_id": np.full(n_combos, task.task_id, dtype=object),
            "strategy": np.full(n_combos, task.strategy, dtype=object),
            "dataset": np.full(n_combos, task.dataset, dtype=object),
            "split_id": np.full(n_combos, split_id, dtype=np.int64),
            "sample": np.full(n_combos, sample, dtype=object),
        }
        columns.update({PARAM_PREFIX + key: values for key, values in block.items()})
        columns.update(metrics_from_accumulators(acc, end - start, task.initial_capital, task.bars_per_year))
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def task_strategy(task: BacktestTask) -> type[Strategy]:
    """The task's strategy class: shipped with the task, or the registered class of that name."""
    if task.strategy_code is None:
        return get_strategy(task.strategy)
    cls = strategy_from_payload(task.strategy_code)
    if getattr(cls, "name", None) != task.strategy:
        raise StrategyError(f"task {task.task_id} ships strategy {getattr(cls, 'name', cls)!r}, not {task.strategy!r}")
    return cls


def metrics_from_accumulators(
    acc: np.ndarray, n_bars: int, initial_capital: float, bars_per_year: float
) -> dict[str, np.ndarray]:
    """The metric columns (in ``results.METRIC_COLUMNS`` order) from the kernels' per-combination accumulators."""
    final = acc[:, kernels.ACC_FINAL_EQUITY]
    s1 = acc[:, kernels.ACC_SUM]
    s2 = acc[:, kernels.ACC_SUMSQ]
    down = acc[:, kernels.ACC_DOWNSIDE_SUMSQ]
    sqrt_bpy = math.sqrt(bars_per_year)
    total = final / initial_capital - 1.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        growth = np.where(total > -1.0, np.log1p(np.maximum(total, -1.0 + 1e-300)), np.nan)
        annual = np.where(total > -1.0, np.expm1(growth * (bars_per_year / n_bars)), -1.0)
        mean = s1 / n_bars
        if n_bars > 1:
            variance = (s2 - s1 * mean) / (n_bars - 1)
            variance = np.where(variance > _VARIANCE_NOISE * (s2 / n_bars), variance, 0.0)
            std = np.sqrt(variance)
        else:
            std = np.full(final.shape, np.nan)
        sharpe = np.where(std > 0.0, mean / std * sqrt_bpy, np.nan)
        downside = np.sqrt(down / n_bars)
        sortino = np.where(downside > 0.0, mean / downside * sqrt_bpy, np.nan)
    return {
        "total_return": total,
        "annual_return": annual,
        "volatility": std * sqrt_bpy,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": acc[:, kernels.ACC_MAX_DRAWDOWN].copy(),
        "n_trades": acc[:, kernels.ACC_TRADES].astype(np.int64),
        "exposure": acc[:, kernels.ACC_EXPOSED_BARS] / n_bars,
        "final_equity": final.copy(),
        "n_bars": np.full(final.shape, n_bars, dtype=np.int64),
    }


def simulate(
    strategy: Strategy | str,
    data: MarketData,
    params: Mapping[str, ParamValue],
    *,
    costs: CostModel | None = None,
    initial_capital: float = 100_000.0,
    bars_per_year: float | None = None,
    window: tuple[int, int] | None = None,
) -> SimulationResult:
    """One combination in full: equity, strategy returns and held positions per bar of ``window``.

    Series are indexed by the window's UTC timestamps; ``metrics`` equal the ``evaluate_task`` row of the
    same combination and window (the same kernels produce both). ``bars_per_year`` None: inferred from the
    whole series' timestamps, as the engine does.
    """
    if bars_per_year is None:
        bars_per_year = infer_bar_frequency(data.timestamps).bars_per_year
    instance = get_strategy(strategy)() if isinstance(strategy, str) else strategy
    if not isinstance(instance, Strategy):
        raise TypeError(f"strategy must be a registry name or a Strategy instance, got {type(strategy).__name__}")
    costs = CostModel() if costs is None else costs
    _check_capital(initial_capital, bars_per_year)
    start, end = (0, len(data)) if window is None else (int(window[0]), int(window[1]))
    _check_window(start, end, len(data))
    block = type(instance).param_block([params])
    targets = _targets(instance, data, block, end)[:, 0]
    returns = kernels.bar_returns(data.close[:end])
    equity, strategy_returns, held = kernels.equity_path(
        np.ascontiguousarray(targets), returns, start, end, costs.rate, initial_capital
    )
    acc = kernels.simulate_targets(targets.reshape(-1, 1), returns, start, end, costs.rate, initial_capital)
    metrics = {
        key: values[0].item()
        for key, values in metrics_from_accumulators(acc, end - start, initial_capital, bars_per_year).items()
    }
    index = data.index[start:end]
    return SimulationResult(
        strategy=getattr(type(instance), "name", type(instance).__name__),
        params={key: values[0].item() for key, values in block.items()},
        equity=pd.Series(equity, index=index, name="equity"),
        returns=pd.Series(strategy_returns, index=index, name="returns"),
        positions=pd.Series(held, index=index, name="position"),
        metrics=metrics,
    )


def _accumulators(
    strategy: Strategy,
    data: MarketData,
    block: ParamBlock,
    windows: Sequence[tuple[int, int]],
    *,
    rate: float,
    initial_capital: float,
) -> list[np.ndarray]:
    fused = strategy.fused(data, block, windows, rate=rate, initial_capital=initial_capital)
    if fused is not None:
        return fused
    last = max(end for _, end in windows)
    returns = kernels.bar_returns(data.close[:last])
    n_combos = next(iter(block.values())).size
    # A (bars x combinations) target matrix of a big block would not fit in memory: signal a few columns
    # at a time. Combinations are independent, so the numbers do not depend on the batch size.
    batch = max(1, min(n_combos, TARGETS_BUDGET_BYTES // (8 * last)))
    parts: list[list[np.ndarray]] = [[] for _ in windows]
    for first in range(0, n_combos, batch):
        sub_block = {key: values[first : first + batch] for key, values in block.items()}
        targets = _targets(strategy, data, sub_block, last)
        for k, (start, end) in enumerate(windows):
            parts[k].append(np.asarray(kernels.simulate_targets(targets, returns, start, end, rate, initial_capital)))
    return [np.concatenate(window_parts) for window_parts in parts]


def _targets(strategy: Strategy, data: MarketData, block: ParamBlock, end: int) -> np.ndarray:
    """The strategy's targets on bars ``[0, end)``: later bars are not even shown to it."""
    visible = data if end == len(data) else _head(data, end)
    targets = np.asarray(strategy.signals(visible, block), dtype=np.float64)
    n_combos = next(iter(block.values())).size if block else 1
    name = type(strategy).name
    if targets.ndim == 1 and n_combos == 1:
        targets = targets.reshape(-1, 1)
    if targets.shape != (end, n_combos):
        raise StrategyError(
            f"{name}.signals returned shape {targets.shape}; expected (n_bars, n_combos) = {(end, n_combos)}"
        )
    if not np.all(np.isfinite(targets)) or np.any(np.abs(targets) > 1.0):
        raise StrategyError(f"{name}.signals must return finite target positions in [-1, 1] (use 0 for no position)")
    return np.ascontiguousarray(targets)


def _head(data: MarketData, end: int) -> MarketData:
    return MarketData(
        name=data.name,
        timestamps=data.timestamps[:end],
        open=data.open[:end],
        high=data.high[:end],
        low=data.low[:end],
        close=data.close[:end],
        volume=data.volume[:end],
    )


def _check_window(start: int, end: int, n_bars: int) -> None:
    if not (0 <= start < end <= n_bars):
        raise ValueError(f"window [{start}, {end}) is not inside the series' {n_bars} bars; need 0 <= start < end <= n")


def _check_capital(initial_capital: float, bars_per_year: float) -> None:
    if not (math.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be a positive amount, got {initial_capital!r}")
    if not (math.isfinite(bars_per_year) and bars_per_year > 0):
        raise ValueError(f"bars_per_year must be positive (252 for daily bars), got {bars_per_year!r}")
