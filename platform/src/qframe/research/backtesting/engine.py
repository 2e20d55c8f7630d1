"""DistributedBacktestEngine: parameter sweeps over strategies x datasets x splits on any compute backend.

The engine turns a sweep into tasks (blocks of parameter combinations, see ``grid``), ships each dataset
once per worker, runs the pure ``evaluate_task`` wherever the backend says, checkpoints every finished task
in the data lake, and assembles the rows in task order, so the same inputs give the same frame on every
backend and after any number of interruptions.

Walk-forward: every combination is evaluated on both the train and the test window of every split in the
same distributed sweep; the choice of parameters on each train window (by ``selection_metric``) is made on
the driver from the in-sample rows, and the chosen rows are flagged. Out-of-sample rows of the chosen
combinations are the walk-forward result; the other out-of-sample rows show what the choice left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry
from qframe.research.backtesting.backends import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_RETRIES,
    BackendResolution,
    ComputeBackend,
    Evaluator,
    TaskOutcome,
    resolve_backend,
    validate_backend_options,
)
from qframe.research.backtesting.checkpoints import (
    CHECKPOINT_PREFIX,
    ObjectStore,
    SweepCheckpoints,
    compute_sweep_id,
    data_fingerprint,
)
from qframe.research.backtesting.evaluate import evaluate_task
from qframe.research.backtesting.grid import expand_grid, iter_blocks
from qframe.research.backtesting.observability import EngineMetrics, sweep_logger, sweep_progress
from qframe.research.backtesting.strategies import available_strategies
from qframe.research.backtesting.types import BacktestTask, CostModel, MarketData, SplitWindow
from qframe.research.backtesting.walk_forward import walk_forward_splits

DEFAULT_BLOCK_SIZE = 64
SELECTION_METRICS: tuple[str, ...] = ("sharpe", "sortino", "total_return", "annual_return", "final_equity")
SAMPLE_FULL = "full"
SAMPLE_IN = "in_sample"
SAMPLE_OUT = "out_of_sample"
TASK_ID_LENGTH = 20


def make_task_id(
    strategy: str,
    dataset: str,
    *,
    params: Sequence[Mapping[str, float | int]],
    split: SplitWindow | None,
    costs: CostModel,
    initial_capital: float,
    bars_per_year: float,
) -> str:
    """Digest of everything a task's rows depend on except the bars (the sweep id covers those)."""
    payload = json.dumps(
        {
            "strategy": strategy,
            "dataset": dataset,
            "params": [sorted((str(k), _json_number(v)) for k, v in combo.items()) for combo in params],
            "split": None if split is None else repr(split),
            "costs": repr(costs),
            "initial_capital": float(initial_capital).hex(),
            "bars_per_year": float(bars_per_year).hex(),
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
    bars_per_year: float,
    block_size: int,
    train_size: int | None = None,
    test_size: int | None = None,
    purge: int = 0,
    anchored: bool = False,
) -> SweepPlan:
    """Strategies x datasets x splits x blocks of combinations, in that nesting order."""
    strategies = _check_sweep_inputs(strategies, grids, n_splits, purge)
    combos_by_strategy = {name: list(expand_grid(name, grids.get(name, {}))) for name in strategies}
    for name, combos in combos_by_strategy.items():
        if not combos:
            raise ValueError(f"the grid for {name!r} leaves no valid parameter combination; widen it")
    tasks: list[BacktestTask] = []
    rows = 0
    for dataset in sorted(market):
        data = market[dataset]
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
        for strategy in strategies:
            combos = combos_by_strategy[strategy]
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
                        bars_per_year=bars_per_year,
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
                            bars_per_year=bars_per_year,
                        )
                    )
                    rows += len(params) * (2 if split is not None else 1)
    return SweepPlan(tuple(tasks), rows, walk_forward=bool(n_splits))


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


def label_results(frame: pd.DataFrame, *, walk_forward: bool, selection_metric: str) -> pd.DataFrame:
    """Add ``sample`` (when the evaluator did not) and ``selected``: the in-sample winner of each split."""
    frame = frame.copy()
    if "sample" not in frame.columns:
        frame["sample"] = SAMPLE_FULL
    if not walk_forward:
        frame["selected"] = True
        return frame
    params = [column for column in frame.columns if column.startswith("param_")]
    group_keys = ["strategy", "dataset", "split_id"]
    in_sample = frame[frame["sample"] == SAMPLE_IN]
    # NaN scores (e.g. a flat series) never win; ties go to the first combination in grid order.
    score = in_sample[selection_metric].astype(float).fillna(-np.inf)
    winners = in_sample.loc[score.groupby([in_sample[key] for key in group_keys], sort=False).idxmax()]
    chosen = winners[group_keys + params].assign(selected=True)
    merged = frame.merge(chosen, on=group_keys + params, how="left", sort=False)
    merged["selected"] = merged["selected"].fillna(False).astype(bool)
    return merged


@dataclass(frozen=True)
class BacktestResults:
    """The rows of one sweep and how it ran.

    ``frame`` has one row per strategy x dataset x split x window x combination (``evaluate_task``'s columns
    plus ``sample`` = "full" | "in_sample" | "out_of_sample" and ``selected``: for walk-forward, the
    combination chosen on that split's train window; without walk-forward, every row is selected).
    """

    frame: pd.DataFrame
    sweep_id: str
    backend: str
    n_tasks: int
    n_computed: int
    n_resumed: int
    elapsed_seconds: float
    walk_forward: bool
    selection_metric: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)


class DistributedBacktestEngine:
    """Runs backtest sweeps on a sequential, Dask or Ray backend with fallback, checkpoints and metrics.

    >>> with DistributedBacktestEngine(compute_backend="dask", max_workers=2) as engine:  # doctest: +SKIP
    ...     results = engine.run_backtest_sync(["ma_crossover"], [bars], {"ma_crossover": {"fast": [5, 10]}})
    ...     summary = engine.get_performance_summary(results)

    The backend starts on first use (or ``start()`` / ``with``); ``backend`` is the one actually running,
    which differs from ``compute_backend`` after a fallback. ``close()`` stops only what the engine started.
    """

    def __init__(  # noqa: PLR0917 - positional order of the seed API
        self,
        compute_backend: str = "auto",
        address: str | None = None,
        max_workers: int | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        checkpoint_storage: ObjectStore | None = None,
        registry: CollectorRegistry | None = None,
        progress: bool = True,
        *,
        retries: int = DEFAULT_RETRIES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        checkpoint_prefix: str = CHECKPOINT_PREFIX,
        evaluator: Evaluator = evaluate_task,
    ) -> None:
        validate_backend_options(compute_backend, max_workers, address)
        _check_block_size(block_size)
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.compute_backend = compute_backend
        self.address = address
        self.max_workers = max_workers
        self.block_size = block_size
        self.checkpoint_storage = checkpoint_storage
        self.checkpoint_prefix = checkpoint_prefix
        self.progress = progress
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.evaluator = evaluator
        self.metrics = EngineMetrics(registry if registry is not None else CollectorRegistry())
        self._resolution: BackendResolution | None = None

    # lifecycle -----------------------------------------------------------------------------------------
    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def start(self) -> DistributedBacktestEngine:
        if self._resolution is None:
            self._resolution = resolve_backend(
                self.compute_backend,
                address=self.address,
                max_workers=self.max_workers,
                retries=self.retries,
                connect_timeout=self.connect_timeout,
            )
        return self

    def _resolved(self) -> BackendResolution:
        self.start()
        if self._resolution is None:  # start() always sets it; this keeps the type checker honest
            raise RuntimeError("the compute backend did not start")
        return self._resolution

    @property
    def compute(self) -> ComputeBackend:
        """The running backend object (started on first access)."""
        return self._resolved().backend

    @property
    def backend(self) -> str:
        """Name of the backend actually used: "sequential", "dask" or "ray"."""
        return self.compute.name

    @property
    def fallback_reasons(self) -> list[tuple[str, str]]:
        return list(self._resolved().skipped)

    def close(self) -> None:
        if self._resolution is not None:
            self._resolution.backend.close()
            self._resolution = None

    def __enter__(self) -> DistributedBacktestEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # sweeps ----------------------------------------------------------------------------------------------
    async def run_distributed_backtest(  # noqa: PLR0917 - positional order of the seed API
        self,
        strategies: Sequence[str],
        datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
        parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]] | None = None,
        n_splits: int = 0,
        initial_capital: float = 100_000.0,
        costs: CostModel | None = None,
        **options: Any,
    ) -> BacktestResults:
        """Async form of :meth:`run_backtest_sync` (the sweep runs in a worker thread; the loop stays free)."""
        return await asyncio.to_thread(
            self.run_backtest_sync,
            strategies,
            datasets,
            parameter_grids,
            n_splits=n_splits,
            initial_capital=initial_capital,
            costs=costs,
            **options,
        )

    def run_backtest_sync(
        self,
        strategies: Sequence[str],
        datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
        parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]] | None = None,
        *,
        n_splits: int = 0,
        initial_capital: float = 100_000.0,
        costs: CostModel | None = None,
        bars_per_year: float = 252.0,
        train_size: int | None = None,
        test_size: int | None = None,
        purge: int = 0,
        anchored: bool = False,
        selection_metric: str = "sharpe",
        block_size: int | None = None,
    ) -> BacktestResults:
        """Evaluate every combination of every strategy's grid on every dataset (and split); see the class doc.

        ``datasets``: MarketData objects, OHLCV bar frames (one MarketData per symbol) or a name -> either
        mapping. ``parameter_grids``: strategy -> {parameter: values}; a strategy without a grid runs its
        defaults. ``n_splits`` > 0 turns on walk-forward with that many train/test splits (``train_size`` and
        ``test_size`` bars per window, ``purge`` bars dropped between train and test, ``anchored`` train
        windows that all start at the first bar).
        """
        if selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric {selection_metric!r} is not one of {', '.join(SELECTION_METRICS)}")
        size = self.block_size if block_size is None else block_size
        _check_block_size(size)
        if initial_capital <= 0:
            raise ValueError(f"initial_capital must be positive, got {initial_capital}")
        market = as_market_data(datasets)
        plan = plan_sweep(
            strategies,
            market,
            parameter_grids or {},
            n_splits=n_splits,
            costs=costs or CostModel(),
            initial_capital=initial_capital,
            bars_per_year=bars_per_year,
            block_size=size,
            train_size=train_size,
            test_size=test_size,
            purge=purge,
            anchored=anchored,
        )
        return self._run_plan(plan, market, selection_metric)

    def _run_plan(self, plan: SweepPlan, market: Mapping[str, MarketData], selection_metric: str) -> BacktestResults:
        started = time.perf_counter()
        backend = self.compute
        fingerprints = {name: data_fingerprint(data) for name, data in market.items()}
        sweep_id = compute_sweep_id([task.task_id for task in plan.tasks], fingerprints)
        log = sweep_logger(sweep_id, backend=backend.name)
        checkpoints = (
            SweepCheckpoints(self.checkpoint_storage, sweep_id, prefix=self.checkpoint_prefix)
            if self.checkpoint_storage is not None
            else None
        )
        frames: dict[str, pd.DataFrame] = {}
        task_ids = {task.task_id for task in plan.tasks}
        if checkpoints is not None:
            for task_id in sorted(checkpoints.completed() & task_ids):
                frames[task_id] = checkpoints.load(task_id)
        resumed = len(frames)
        self.metrics.record_resumed(backend=backend.name, tasks=resumed)
        todo = [task for task in plan.tasks if task.task_id not in frames]
        strategy_of = {task.task_id: task.strategy for task in plan.tasks}
        log.info(
            "sweep started",
            backend_detail=backend.description,
            tasks=len(plan.tasks),
            combinations=plan.n_combinations,
            resumed_tasks=resumed,
            datasets=sorted(market),
            strategies=sorted({task.strategy for task in plan.tasks}),
        )

        with sweep_progress(
            len(plan.tasks), description=f"backtest {sweep_id} on {backend.name}", enabled=self.progress
        ) as progress:
            progress.advance(resumed)

            def on_result(outcome: TaskOutcome) -> None:
                if outcome.task_id not in task_ids:
                    raise RuntimeError(f"backend returned a result for unknown task {outcome.task_id}")
                if outcome.task_id in frames:
                    # Re-executions after a worker loss can surface twice; the first result wins (they are equal).
                    log.warning("duplicate task result ignored", task_id=outcome.task_id)
                    return
                if checkpoints is not None:
                    checkpoints.save(outcome.task_id, outcome.frame)
                frames[outcome.task_id] = outcome.frame
                self.metrics.record_task(
                    strategy=strategy_of[outcome.task_id],
                    backend=backend.name,
                    combinations=len(outcome.frame),
                    seconds=outcome.seconds,
                )
                progress.advance()

            backend.run(todo, market, on_result=on_result, evaluator=self.evaluator)

        missing = task_ids - set(frames)
        if missing:
            raise RuntimeError(f"{len(missing)} task(s) produced no result: {sorted(missing)[:5]}")
        ordered = [frames[task.task_id] for task in plan.tasks]
        frame = pd.concat(ordered, ignore_index=True) if ordered else pd.DataFrame()
        frame = plan.label(frame, selection_metric)
        elapsed = time.perf_counter() - started
        log.info(
            "sweep finished",
            rows=len(frame),
            computed_tasks=len(todo),
            resumed_tasks=resumed,
            elapsed_s=round(elapsed, 3),
        )
        return BacktestResults(
            frame=frame,
            sweep_id=sweep_id,
            backend=backend.name,
            n_tasks=len(plan.tasks),
            n_computed=len(todo),
            n_resumed=resumed,
            elapsed_seconds=elapsed,
            walk_forward=plan.walk_forward,
            selection_metric=selection_metric,
        )

    # reporting -------------------------------------------------------------------------------------------
    def get_performance_summary(
        self, results: BacktestResults | pd.DataFrame, *, metric: str | None = None
    ) -> pd.DataFrame:
        return get_performance_summary(results, metric=metric)


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer (combinations per task), got {block_size!r}")


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


def get_performance_summary(results: BacktestResults | pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """One row per strategy x dataset: the best combination and how the whole grid did.

    Without walk-forward: the best combination by ``metric`` (default sharpe) with its metrics, plus the
    number of combinations, median and spread of the metric and the share of profitable combinations.
    With walk-forward: the out-of-sample result of the parameters chosen in-sample on each split (mean
    metric, compounded return, worst drawdown), the in-sample metric of the same choices (to see the
    decay) and the most often chosen parameters.
    """
    if isinstance(results, BacktestResults):
        frame = results.frame
        metric = metric or results.selection_metric
    else:
        frame = results
    metric = metric or "sharpe"
    if frame.empty:
        raise ValueError("the results are empty; nothing to summarise")
    required = {"strategy", "dataset", metric, "total_return", "max_drawdown", "n_trades"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise ValueError(f"results frame lacks columns {missing}; pass what run_backtest_sync returned")
    param_columns = [column for column in frame.columns if column.startswith("param_")]
    walk_forward = "sample" in frame.columns and bool((frame["sample"] == "out_of_sample").any())
    rows: list[dict[str, Any]] = []
    for (strategy, dataset), group in frame.groupby(["strategy", "dataset"], sort=True):
        if walk_forward:
            rows.append(_walk_forward_summary(str(strategy), str(dataset), group, metric, param_columns))
        else:
            rows.append(_grid_summary(str(strategy), str(dataset), group, metric, param_columns))
    return pd.DataFrame(rows)


def _best_params(row: pd.Series, param_columns: Sequence[str]) -> dict[str, Any]:
    return {column: row[column] for column in param_columns if pd.notna(row[column])}


def _grid_summary(
    strategy: str, dataset: str, group: pd.DataFrame, metric: str, param_columns: Sequence[str]
) -> dict[str, Any]:
    ranked = group.sort_values([metric, "total_return"], ascending=False, kind="stable", na_position="last")
    best = ranked.iloc[0]
    values = group[metric].to_numpy(dtype=float)
    return {
        "strategy": strategy,
        "dataset": dataset,
        "mode": "grid",
        "n_combinations": len(group),
        f"best_{metric}": float(best[metric]),
        "best_total_return": float(best["total_return"]),
        "best_max_drawdown": float(best["max_drawdown"]),
        "best_n_trades": int(best["n_trades"]),
        "best_params": _best_params(best, param_columns),
        f"median_{metric}": float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan"),
        f"std_{metric}": float(np.nanstd(values)) if np.isfinite(values).any() else float("nan"),
        "share_profitable": float((group["total_return"] > 0).mean()),
    }


def _walk_forward_summary(
    strategy: str, dataset: str, group: pd.DataFrame, metric: str, param_columns: Sequence[str]
) -> dict[str, Any]:
    chosen = group[group["selected"]]
    oos = chosen[chosen["sample"] == "out_of_sample"].sort_values("split_id")
    ins = chosen[chosen["sample"] == "in_sample"].sort_values("split_id")
    compounded = float(np.prod(1.0 + oos["total_return"].to_numpy(dtype=float)) - 1.0)
    choices = [tuple(sorted(_best_params(row, param_columns).items())) for _, row in oos.iterrows()]
    # Counter keeps first-seen order among equals, so a tie goes to the earliest split's choice.
    most_chosen = dict(Counter(choices).most_common(1)[0][0]) if choices else {}
    return {
        "strategy": strategy,
        "dataset": dataset,
        "mode": "walk_forward",
        "n_splits": int(oos["split_id"].nunique()),
        "n_combinations": int(len(group[group["sample"] == "in_sample"]) // max(1, ins["split_id"].nunique())),
        f"oos_mean_{metric}": float(oos[metric].mean()),
        f"is_mean_{metric}": float(ins[metric].mean()),
        "oos_compounded_return": compounded,
        "oos_worst_drawdown": float(oos["max_drawdown"].min()),
        "oos_n_trades": int(oos["n_trades"].sum()),
        "most_chosen_params": most_chosen,
    }


def run_backtest_sync(
    strategies: Sequence[str],
    datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
    parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]] | None = None,
    *,
    compute_backend: str = "sequential",
    max_workers: int | None = None,
    address: str | None = None,
    checkpoint_storage: ObjectStore | None = None,
    progress: bool = False,
    **options: Any,
) -> BacktestResults:
    """One-shot sweep: start an engine, run, close it."""
    with DistributedBacktestEngine(
        compute_backend,
        address=address,
        max_workers=max_workers,
        checkpoint_storage=checkpoint_storage,
        progress=progress,
    ) as engine:
        return engine.run_backtest_sync(strategies, datasets, parameter_grids, **options)
