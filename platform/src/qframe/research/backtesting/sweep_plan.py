"""Sweep planning: strategies x datasets x walk-forward splits x blocks of parameter combinations -> tasks.

A plan is pure data, decided on the driver before any backend starts: the same inputs give the same tasks
with the same ids in the same order, which is what lets checkpoints of an interrupted sweep be found again
and every backend assemble the same frame. Execution lives in ``engine``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd
from qframe.research.backtesting.grid import expand_grid, iter_blocks
from qframe.research.backtesting.results import label_results
from qframe.research.backtesting.strategies import (
    available_strategies,
    get_strategy,
    strategy_fingerprint,
    strategy_payload,
)
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SplitWindow
from qframe.research.backtesting.walk_forward import walk_forward_splits

TASK_ID_LENGTH = 20
# Fewest bars a walk-forward window may hold: below this a window's Sharpe is noise and the sweep is mostly
# overhead (2,000 splits of 8,687 bars are 4-bar windows).
MIN_EVALUATION_BARS = 20


def make_task_id(
    strategy: str,
    dataset: str,
    *,
    params: Sequence[Mapping[str, float | int]],
    split: SplitWindow | None,
    costs: CostModel,
    initial_capital: float,
    bars_per_year: float,
    code: str | None = None,
) -> str:
    """Digest of everything a task's rows depend on except the bars (the sweep id covers those).

    ``code`` is the fingerprint of a strategy shipped by value (its code may change between runs).
    """
    payload = json.dumps(
        {
            "strategy": strategy,
            "dataset": dataset,
            "params": [sorted((str(k), _json_number(v)) for k, v in combo.items()) for combo in params],
            "split": None if split is None else repr(split),
            "costs": repr(costs),
            "initial_capital": float(initial_capital).hex(),
            "bars_per_year": float(bars_per_year).hex(),
            **({"code": code} if code is not None else {}),
        },
        sort_keys=True,
    )
    return f"{strategy}-" + hashlib.sha256(payload.encode()).hexdigest()[:TASK_ID_LENGTH]


def _json_number(value: float | int) -> str:
    # float.hex keeps 0.1 and 0.1000000000000001 apart; ints stay ints so 5 and 5.0 are distinct inputs.
    return float(value).hex() if isinstance(value, float) else str(int(value))


@dataclass(frozen=True)
class SweepPlan:
    """The tasks of a sweep, in a deterministic order, and which window each one evaluates."""

    tasks: tuple[BacktestTask, ...]
    n_combinations: int  # rows the sweep will produce
    walk_forward: bool

    def label(self, frame: pd.DataFrame, selection_metric: str) -> pd.DataFrame:
        return label_results(frame, walk_forward=self.walk_forward, selection_metric=selection_metric)


def plan_sweep(
    strategies: Sequence[str],
    market: Mapping[str, MarketData],
    grids: Mapping[str, Mapping[str, Sequence[float | int]]],
    *,
    n_splits: int,
    costs: CostModel,
    initial_capital: float,
    bars_per_year: float | Mapping[str, float],
    block_size: int,
    train_size: int | None = None,
    test_size: int | None = None,
    purge: int = 0,
    anchored: bool = False,
) -> SweepPlan:
    """Strategies x datasets x splits x blocks of combinations, in that nesting order.

    ``bars_per_year``: one value for every dataset, or one per dataset name.
    """
    strategies = _check_sweep_inputs(strategies, grids, n_splits, purge)
    combos_by_strategy = {name: list(expand_grid(name, grids.get(name, {}))) for name in strategies}
    payloads = {name: strategy_payload(name) for name in strategies}
    fingerprints = {name: strategy_fingerprint(name) for name in strategies}
    for name, combos in combos_by_strategy.items():
        if not combos:
            raise ValueError(f"the grid for {name!r} leaves no valid parameter combination; widen it")
    tasks: list[BacktestTask] = []
    rows = 0
    for dataset in sorted(market):
        data = market[dataset]
        annualisation = bars_per_year[dataset] if isinstance(bars_per_year, Mapping) else bars_per_year
        splits: list[SplitWindow | None] = [None]
        if n_splits:
            splits = list(
                walk_forward_splits(
                    len(data.close),
                    n_splits,
                    train_size=train_size,
                    test_size=test_size,
                    purge=purge,
                    anchored=anchored,
                )
            )
        first = splits[0]
        if first is not None:
            _check_window_sizes(dataset, len(data.close), first, n_splits, purge)
        for strategy in strategies:
            combos = combos_by_strategy[strategy]
            _check_lookbacks(strategy, combos, dataset, len(data.close), first)
            for split in splits:
                for block in iter_blocks(combos, block_size):
                    params = tuple(dict(combo) for combo in block)
                    task_id = make_task_id(
                        strategy,
                        dataset,
                        params=params,
                        split=split,
                        costs=costs,
                        initial_capital=initial_capital,
                        bars_per_year=annualisation,
                        code=fingerprints[strategy],
                    )
                    tasks.append(
                        BacktestTask(
                            task_id=task_id,
                            strategy=strategy,
                            dataset=dataset,
                            params=params,
                            split=split,
                            costs=costs,
                            initial_capital=initial_capital,
                            bars_per_year=annualisation,
                            strategy_code=payloads[strategy],
                        )
                    )
                    rows += len(params) * (2 if split is not None else 1)
    return SweepPlan(tuple(tasks), rows, walk_forward=bool(n_splits))


def _check_window_sizes(dataset: str, n_bars: int, first: SplitWindow, n_splits: int, purge: int) -> None:
    train = first.train_end - first.train_start
    test = first.test_end - first.test_start
    if min(train, test) >= MIN_EVALUATION_BARS:
        return
    most = max(0, (n_bars - purge) // MIN_EVALUATION_BARS - 2)
    raise ValueError(
        f"{n_splits} walk-forward splits of dataset {dataset!r} ({n_bars:,} bars) leave {train:,} bars per train "
        f"window and {test:,} per test window; each window needs at least {MIN_EVALUATION_BARS} bars for its figures "
        f"to mean anything: use at most {most} splits (--splits), larger --train-size/--test-size, or more data"
    )


def _check_lookbacks(
    strategy: str, combos: Sequence[Mapping[str, float | int]], dataset: str, n_bars: int, first: SplitWindow | None
) -> None:
    """Refuse lookbacks no window can serve: those combinations could never take a position."""
    if first is None:
        available, where = n_bars, f"dataset {dataset!r} has {n_bars:,} bars"
    else:
        available = first.train_end - first.train_start
        where = f"the first train window of dataset {dataset!r} has {available:,} bars"
    too_long: list[str] = []
    for key in get_strategy(strategy).lookbacks():
        values = sorted({int(combo[key]) for combo in combos if key in combo and int(combo[key]) >= available})
        if values:
            shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
            too_long.append(f"{strategy}.{key}={shown}")
    if too_long:
        raise ValueError(
            f"{'; '.join(too_long)}: a lookback needs that many bars of history before the first position, but "
            f"{where}; drop lookbacks >= {available:,} from the grid, use fewer splits, or use more data"
        )


def _check_sweep_inputs(strategies: Sequence[str], grids: Mapping[str, object], n_splits: int, purge: int) -> list[str]:
    if isinstance(strategies, str):
        return _check_sweep_inputs([strategies], grids, n_splits, purge)
    if not strategies:
        raise ValueError("no strategies given: pass registry names, e.g. ['ma_crossover']")
    known = set(available_strategies())
    unknown = sorted(set(strategies) - known)
    if unknown:
        raise ValueError(
            f"unknown strategies {unknown}; registered: {sorted(known)} (subclass Strategy with a `name` to add one)"
        )
    duplicates = sorted({name for name in strategies if list(strategies).count(name) > 1})
    if duplicates:
        raise ValueError(f"strategies listed twice: {duplicates}")
    stray = sorted(set(grids) - set(strategies))
    if stray:
        raise ValueError(f"parameter_grids has grids for strategies that are not run: {stray}; add them to strategies")
    if not isinstance(n_splits, int) or n_splits < 0:
        raise ValueError(f"n_splits must be 0 (no walk-forward) or a positive number of splits, got {n_splits!r}")
    if purge < 0:
        raise ValueError(f"purge must be >= 0 bars, got {purge}")
    return list(strategies)


def as_market_data(
    datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
) -> dict[str, MarketData]:
    """Datasets keyed by name; a bars frame becomes one MarketData per symbol (named after the symbol)."""
    items: list[tuple[str | None, MarketData | pd.DataFrame]]
    if isinstance(datasets, Mapping):
        items = [(str(name), value) for name, value in datasets.items()]
    elif isinstance(datasets, (MarketData, pd.DataFrame)):
        items = [(None, datasets)]
    else:
        items = [(None, value) for value in datasets]
    if not items:
        raise ValueError("no datasets given: pass MarketData objects or OHLCV bars frames")
    market: dict[str, MarketData] = {}

    def add(data: MarketData) -> None:
        if data.name in market:
            raise ValueError(f"two datasets are named {data.name!r}; give them distinct names (a mapping name -> data)")
        market[data.name] = data

    for name, value in items:
        if isinstance(value, MarketData):
            add(value if name is None or name == value.name else replace(value, name=name))
        elif isinstance(value, pd.DataFrame):
            if "symbol" in value.columns and value["symbol"].nunique() > 1:
                if name is not None:
                    raise ValueError(
                        f"dataset {name!r} holds several symbols; pass it unnamed (one dataset per symbol)"
                    )
                for symbol in sorted(value["symbol"].unique()):
                    add(MarketData.from_bars(value, symbol=str(symbol)))
            else:
                add(MarketData.from_bars(value, name=name))
        else:
            raise TypeError(f"a dataset must be MarketData or an OHLCV DataFrame, got {type(value).__name__}")
    return market
