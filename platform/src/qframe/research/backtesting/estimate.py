"""What a planned sweep will cost before it starts: tasks, run time and peak memory.

The time comes from a calibration on the sweep's own data: for each strategy, its lightest and heaviest tasks
are timed (after one call that compiles the kernels), which gives a fixed cost per task and a cost per bar
evaluation (one combination on one bar read) on this machine; summed over the tasks still to compute and
divided by the workers, that is the estimate. Memory adds the results the driver assembles (bytes per row measured
in the calibration), the datasets (one copy per local worker and one in the driver) and each worker's task
scratch (traced in the calibration, scaled to a full block).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from qframe.research.backtesting.backends import Evaluator
from qframe.research.backtesting.evaluate import evaluate_task
from qframe.research.backtesting.sweep_plan import SweepPlan
from qframe.research.backtesting.types import PRICE_COLUMNS, BacktestTask, MarketData

CALIBRATION_MIN_SECONDS = 0.2
CALIBRATION_MAX_RUNS = 50
# The driver holds every task's frame and then their concatenation (and its labelled copy) at once.
RESULT_COPIES = 3


@dataclass(frozen=True)
class SweepEstimate:
    """The cost of a planned sweep; ``lines()`` is what ``qframe backtest`` prints before starting."""

    tasks: int
    resumed: int  # tasks already in checkpoints: read back, not computed
    rows: int
    composition: str  # how the tasks come about, e.g. "ma_crossover: 25 combinations in 1 block x 4 splits x 3 ..."
    bar_evaluations: int  # of the tasks still to compute
    rate: float  # bar evaluations per second of one worker, measured
    calibration_seconds: float
    workers: int | None  # None: a remote cluster of unknown size
    seconds: float  # wall time on ``workers`` (one worker when unknown)
    result_bytes: int
    data_bytes: int
    data_copies: int
    scratch_bytes: int  # one task's, at full block size
    concurrent_tasks: int

    @property
    def memory_bytes(self) -> int:
        return self.result_bytes + self.data_bytes * self.data_copies + self.scratch_bytes * self.concurrent_tasks

    def lines(self) -> list[str]:
        done = f"; {self.resumed:,} already done (checkpoints)" if self.resumed else ""
        where = f"on {_count(self.workers, 'worker')}" if self.workers else "on one worker"
        divide = "" if self.workers else " (a remote cluster divides it by its workers)"
        return [
            f"tasks        {self.tasks:,} ({self.composition}){done}, {self.rows:,} result rows",
            f"estimate     {format_duration(self.seconds)} {where}{divide}: {self.bar_evaluations:,} bar evaluations "
            f"at {self.rate:,.0f}/s per worker, timed on this data in {self.calibration_seconds:.1f} s (each "
            "strategy's lightest and heaviest task; cluster startup, tear sheets and tracking not included)",
            f"memory       ~{format_bytes(self.memory_bytes)} peak: results {format_bytes(self.result_bytes)}, data "
            f"{format_bytes(self.data_bytes)} x {_count(self.data_copies, 'copy', 'copies')}, task scratch "
            f"{format_bytes(self.scratch_bytes)} x {self.concurrent_tasks} at a time",
        ]


def bars_read(task: BacktestTask, data: MarketData) -> int:
    """Bars one combination of ``task`` reads: up to the end of its last window (history included)."""
    return len(data) if task.split is None else task.split.test_end


def bar_evaluations(task: BacktestTask, market: Mapping[str, MarketData]) -> int:
    return len(task.params) * bars_read(task, market[task.dataset])


@dataclass(frozen=True)
class TaskCost:
    """Seconds of one task = ``fixed`` (per call: frames, setup) + ``per_evaluation`` x its bar evaluations."""

    fixed: float
    per_evaluation: float

    @classmethod
    def fit(cls, light: tuple[int, float], heavy: tuple[int, float]) -> TaskCost:
        """The line through the lightest and heaviest task's timings (one point: no fixed part)."""
        (light_work, light_s), (heavy_work, heavy_s) = light, heavy
        if heavy_work > light_work and heavy_s > light_s:
            slope = (heavy_s - light_s) / (heavy_work - light_work)
            return cls(fixed=max(0.0, heavy_s - slope * heavy_work), per_evaluation=slope)
        return cls(fixed=0.0, per_evaluation=heavy_s / max(1, heavy_work))

    def seconds(self, evaluations: int) -> float:
        return self.fixed + self.per_evaluation * evaluations


def _first(item: tuple[int, BacktestTask]) -> int:
    return item[0]


def _timed(evaluator: Evaluator, task: BacktestTask, data: MarketData) -> float:
    """Seconds per call, repeated until the timing is long enough to mean something (one short call is noisy)."""
    runs, started = 0, time.perf_counter()
    while runs < CALIBRATION_MAX_RUNS and (runs == 0 or time.perf_counter() - started < CALIBRATION_MIN_SECONDS):
        evaluator(task, data)
        runs += 1
    return max(time.perf_counter() - started, 1e-9) / runs


def estimate_sweep(
    plan: SweepPlan,
    market: Mapping[str, MarketData],
    *,
    workers: int | None,
    local: bool,
    done: Collection[str] = (),
    block_size: int,
    evaluator: Evaluator = evaluate_task,
) -> SweepEstimate:
    """Time and memory of ``plan`` on ``workers`` (None: unknown remote cluster); ``done``: checkpointed task ids.

    ``local``: the workers run on this machine (their copies of the data count towards its memory).
    """
    todo = [task for task in plan.tasks if task.task_id not in done]
    by_strategy: dict[str, list[BacktestTask]] = {}
    for task in plan.tasks:  # all tasks, so a fully resumed sweep still measures its row size
        by_strategy.setdefault(task.strategy, []).append(task)
    started = time.perf_counter()
    costs: dict[str, TaskCost] = {}
    row_bytes = 0.0
    scratch = 0
    for strategy, tasks in by_strategy.items():
        sized = [(bar_evaluations(task, market), task) for task in tasks]
        (light_work, light), (heavy_work, heavy) = min(sized, key=_first), max(sized, key=_first)
        frame = evaluator(heavy, market[heavy.dataset])  # compiles the kernels; not what a task costs
        heavy_s = _timed(evaluator, heavy, market[heavy.dataset])
        light_s = heavy_s if light is heavy else _timed(evaluator, light, market[light.dataset])
        costs[strategy] = TaskCost.fit((light_work, light_s), (heavy_work, heavy_s))
        row_bytes = max(row_bytes, float(frame.memory_usage(deep=True).sum()) / max(1, len(frame)))
        tracemalloc.start()
        try:
            evaluator(heavy, market[heavy.dataset])
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        scratch = max(scratch, int(traced * block_size / len(heavy.params)))
    calibration = time.perf_counter() - started

    evaluations = {strategy: 0 for strategy in by_strategy}
    one_worker = 0.0
    for task in todo:
        work = bar_evaluations(task, market)
        evaluations[task.strategy] += work
        one_worker += costs[task.strategy].seconds(work)
    total = sum(evaluations.values())
    n_workers = workers or 1
    data_bytes = sum(sum(getattr(data, c).nbytes for c in (*PRICE_COLUMNS, "timestamps")) for data in market.values())
    return SweepEstimate(
        tasks=len(plan.tasks),
        resumed=len(plan.tasks) - len(todo),
        rows=plan.n_combinations,
        composition=_composition(plan, block_size),
        bar_evaluations=total,
        rate=total / one_worker if one_worker else 0.0,
        calibration_seconds=calibration,
        workers=workers,
        seconds=one_worker / n_workers,
        result_bytes=int(row_bytes * plan.n_combinations * RESULT_COPIES),
        data_bytes=data_bytes,
        data_copies=1 + (n_workers if local and workers else 0),
        scratch_bytes=scratch,
        concurrent_tasks=min(n_workers, max(1, len(todo))) if local else 1,
    )


def _composition(plan: SweepPlan, block_size: int) -> str:
    """``ma_crossover: 25 combinations -> 1 block; x 4 splits x 3 datasets`` (the nesting the planner uses)."""
    datasets = sorted({task.dataset for task in plan.tasks})
    splits = {task.split.split_id for task in plan.tasks if task.split is not None}
    per_strategy: dict[str, int] = {}
    first = (datasets[0], min(splits) if splits else None)
    for task in plan.tasks:
        if (task.dataset, task.split.split_id if task.split else None) == first:
            per_strategy[task.strategy] = per_strategy.get(task.strategy, 0) + len(task.params)
    parts = []
    for strategy, combos in per_strategy.items():
        blocks = -(-combos // block_size)
        parts.append(f"{strategy}: {_count(combos, 'combination')} -> {_count(blocks, 'block')}")
    shape = f" x {_count(len(splits), 'split')}" if splits else ""
    return f"{', '.join(parts)}; each{shape} x {_count(len(datasets), 'dataset')}"


def format_duration(seconds: float) -> str:
    """``under 1 s``, ``~40 s``, ``~12 min``, ``~3.5 h``, ``~2.1 days``: an estimate, never a precise figure."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"~{seconds:.0f} s"
    if seconds < 3600:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} days"


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number:,} {one if number == 1 else many or one + 's'}"


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
