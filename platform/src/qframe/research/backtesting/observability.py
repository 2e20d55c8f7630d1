"""Logs, metrics and progress for backtest sweeps.

Metrics live on a registry owned by one engine (or injected by the caller), never on the process-wide default
registry: two engines in one notebook must not collide, and importing this module registers nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Tasks are blocks of combinations: from milliseconds (tiny grids) to minutes (1M bars x big blocks).
TASK_DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class EngineMetrics:
    """Prometheus instruments for one engine.

    ``qframe_backtests_total{strategy,backend}`` counts parameter combinations evaluated (not tasks), so it
    can be compared across block sizes; ``qframe_backtest_task_duration_seconds{backend}`` is the worker-side
    time of one task; ``qframe_backtest_tasks_resumed_total`` counts tasks taken from checkpoints instead.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    backtests: Counter = field(init=False)
    task_duration: Histogram = field(init=False)
    tasks_resumed: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.backtests = Counter(
            "qframe_backtests_total",
            "Parameter combinations backtested.",
            ["strategy", "backend"],
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "qframe_backtest_task_duration_seconds",
            "Worker-side duration of one backtest task (a block of parameter combinations).",
            ["backend"],
            buckets=TASK_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tasks_resumed = Counter(
            "qframe_backtest_tasks_resumed_total",
            "Backtest tasks whose results were read back from a checkpoint instead of recomputed.",
            ["backend"],
            registry=self.registry,
        )

    def record_task(self, *, strategy: str, backend: str, combinations: int, seconds: float) -> None:
        self.backtests.labels(strategy=strategy, backend=backend).inc(combinations)
        self.task_duration.labels(backend=backend).observe(seconds)

    def record_resumed(self, *, backend: str, tasks: int) -> None:
        if tasks:
            self.tasks_resumed.labels(backend=backend).inc(tasks)


def sweep_logger(sweep_id: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger whose every event carries the sweep id, so one sweep's lines can be grepped out of a cluster."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(__name__).bind(sweep_id=sweep_id, **context)
    return logger


class SweepProgress:
    """A rich progress bar over tasks; a no-op when disabled or when the console is not a terminal."""

    def __init__(self, total: int, *, description: str, enabled: bool = True, console: Console | None = None) -> None:
        self._console = console or Console(file=sys.stderr)
        self.enabled = enabled and self._console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            disable=not self.enabled,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total)

    def advance(self, tasks: int = 1) -> None:
        self._progress.advance(self._task, tasks)

    @property
    def completed(self) -> int:
        return int(self._progress.tasks[0].completed)

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()


@contextmanager
def sweep_progress(
    total: int, *, description: str, enabled: bool = True, console: Console | None = None
) -> Iterator[SweepProgress]:
    with SweepProgress(total, description=description, enabled=enabled, console=console) as progress:
        yield progress
