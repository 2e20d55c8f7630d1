"""DistributedBacktestEngine: runs a planned sweep on a compute backend and assembles its results frame.

``sweep_plan`` turns the sweep into tasks (blocks of parameter combinations); the engine ships each dataset
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
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

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
from qframe.research.backtesting.estimate import SweepEstimate, estimate_sweep
from qframe.research.backtesting.evaluate import evaluate_task
from qframe.research.backtesting.observability import EngineMetrics, sweep_logger, sweep_progress
from qframe.research.backtesting.results import SELECTION_METRICS, BacktestResults, get_performance_summary
from qframe.research.backtesting.sweep_plan import SweepPlan, as_market_data, plan_sweep
from qframe.research.backtesting.types import CostModel, MarketData
from qframe.research.bar_frequency import BarFrequency, resolve_frequency
from rich.console import Console

DEFAULT_BLOCK_SIZE = 64


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
        progress_console: Console | None = None,
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
        # Where progress bars go (default stderr); shown only on a terminal.
        self.progress_console = progress_console
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
        bars_per_year: float | None = None,
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
        windows that all start at the first bar). ``bars_per_year`` annualises every figure; None (default)
        infers it per dataset from the timestamps (24/7 vs exchange sessions; ``results.frequencies`` says
        what was used, and the summaries, tear sheets and tracking runs use the same value).
        """
        if selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric {selection_metric!r} is not one of {', '.join(SELECTION_METRICS)}")
        market, frequencies, plan = self._plan(
            strategies,
            datasets,
            parameter_grids,
            n_splits=n_splits,
            initial_capital=initial_capital,
            costs=costs,
            bars_per_year=bars_per_year,
            train_size=train_size,
            test_size=test_size,
            purge=purge,
            anchored=anchored,
            block_size=block_size,
        )
        return self._run_plan(plan, market, selection_metric, frequencies)

    def estimate_backtest(
        self,
        strategies: Sequence[str],
        datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
        parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]] | None = None,
        **options: Any,
    ) -> SweepEstimate:
        """What :meth:`run_backtest_sync` with the same arguments would run and cost (see ``estimate``).

        Plans exactly as the run does (same tasks, and the checkpoints it would resume from) and times one block
        of each strategy on the data; it does not start the compute backend.
        """
        options.pop("selection_metric", None)
        size = options.get("block_size") or self.block_size
        market, _, plan = self._plan(strategies, datasets, parameter_grids, **options)
        done: set[str] = set()
        if self.checkpoint_storage is not None:
            sweep_id = compute_sweep_id(
                [task.task_id for task in plan.tasks], {name: data_fingerprint(d) for name, d in market.items()}
            )
            done = SweepCheckpoints(self.checkpoint_storage, sweep_id, prefix=self.checkpoint_prefix).completed()
        sequential = self.compute_backend == "sequential"
        workers = 1 if sequential else (None if self.address else self.max_workers or os.cpu_count() or 1)
        return estimate_sweep(
            plan,
            market,
            workers=workers,
            local=not (self.address or sequential),
            done=done,
            block_size=size,
            evaluator=self.evaluator,
        )

    def _plan(
        self,
        strategies: Sequence[str],
        datasets: Sequence[MarketData | pd.DataFrame] | Mapping[str, MarketData | pd.DataFrame],
        parameter_grids: Mapping[str, Mapping[str, Sequence[float | int]]] | None,
        *,
        n_splits: int = 0,
        initial_capital: float = 100_000.0,
        costs: CostModel | None = None,
        bars_per_year: float | None = None,
        train_size: int | None = None,
        test_size: int | None = None,
        purge: int = 0,
        anchored: bool = False,
        block_size: int | None = None,
    ) -> tuple[dict[str, MarketData], dict[str, BarFrequency], SweepPlan]:
        size = self.block_size if block_size is None else block_size
        _check_block_size(size)
        if initial_capital <= 0:
            raise ValueError(f"initial_capital must be positive, got {initial_capital}")
        market = as_market_data(datasets)
        frequencies = {name: resolve_frequency(data.timestamps, bars_per_year) for name, data in market.items()}
        plan = plan_sweep(
            strategies,
            market,
            parameter_grids or {},
            n_splits=n_splits,
            costs=costs or CostModel(),
            initial_capital=initial_capital,
            bars_per_year={name: frequency.bars_per_year for name, frequency in frequencies.items()},
            block_size=size,
            train_size=train_size,
            test_size=test_size,
            purge=purge,
            anchored=anchored,
        )
        return market, frequencies, plan

    def _run_plan(
        self,
        plan: SweepPlan,
        market: Mapping[str, MarketData],
        selection_metric: str,
        frequencies: Mapping[str, BarFrequency] | None = None,
    ) -> BacktestResults:
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
            checkpoints.describe(strategies=strategy_names(plan), datasets=sorted(market), n_tasks=len(plan.tasks))
            finished = sorted(checkpoints.completed() & task_ids)
            # Reading thousands of checkpoints back takes a while (25 s for a big sweep): show it.
            with sweep_progress(
                len(finished),
                description=f"loading {len(finished):,} checkpoints of {sweep_id}",
                enabled=self.progress and bool(finished),
                console=self.progress_console,
            ) as loading:
                for task_id in finished:
                    frames[task_id] = checkpoints.load(task_id)
                    loading.advance()
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
            annualisation={name: f.describe() for name, f in sorted((frequencies or {}).items())},
            strategies=strategy_names(plan),
        )

        with sweep_progress(
            len(plan.tasks),
            description=f"backtest {sweep_id} on {backend.name}",
            enabled=self.progress,
            console=self.progress_console,
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
            frequencies=dict(frequencies or {}),
        )

    # reporting -------------------------------------------------------------------------------------------
    def get_performance_summary(
        self, results: BacktestResults | pd.DataFrame, *, metric: str | None = None
    ) -> pd.DataFrame:
        return get_performance_summary(results, metric=metric)


def strategy_names(plan: SweepPlan) -> list[str]:
    return sorted({task.strategy for task in plan.tasks})


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer (combinations per task), got {block_size!r}")


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
