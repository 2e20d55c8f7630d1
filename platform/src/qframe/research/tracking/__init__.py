"""Experiment tracking: one parent run per sweep, nested runs per strategy (MLflow or in memory).

A pure adapter: it logs the params, metrics, results frames and files it is given and computes none of
them (summaries are in ``backtesting.results``, tear sheets and strategy reports in ``reporting``).
``MlflowTracker`` is imported lazily so that ``import qframe.research.tracking`` never imports mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qframe.research.tracking.base import (
    ExperimentTracker,
    InMemoryTracker,
    RecordedStrategy,
    RecordedSweep,
    SweepRun,
    TrackingError,
    TrackingUnavailableError,
    flatten_params,
)

if TYPE_CHECKING:
    from qframe.research.tracking.mlflow_tracking import MlflowTracker

__all__ = [
    "ExperimentTracker",
    "InMemoryTracker",
    "MlflowTracker",
    "RecordedStrategy",
    "RecordedSweep",
    "SweepRun",
    "TrackingError",
    "TrackingUnavailableError",
    "flatten_params",
]


def __getattr__(name: str) -> Any:
    if name == "MlflowTracker":
        from qframe.research.tracking.mlflow_tracking import MlflowTracker  # noqa: PLC0415

        return MlflowTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
