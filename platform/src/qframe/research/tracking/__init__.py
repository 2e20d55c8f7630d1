"""Experiment tracking: one parent run per sweep, nested runs per strategy (MLflow or in memory).

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
from qframe.research.tracking.strategy_report import StrategyReport, log_strategy_report
from qframe.research.tracking.summary import StrategySummary, summarize_results

if TYPE_CHECKING:
    from qframe.research.tracking.mlflow_tracking import MlflowTracker

__all__ = [
    "ExperimentTracker",
    "InMemoryTracker",
    "MlflowTracker",
    "RecordedStrategy",
    "RecordedSweep",
    "StrategyReport",
    "StrategySummary",
    "SweepRun",
    "TrackingError",
    "TrackingUnavailableError",
    "flatten_params",
    "log_strategy_report",
    "summarize_results",
]


def __getattr__(name: str) -> Any:
    if name == "MlflowTracker":
        from qframe.research.tracking.mlflow_tracking import MlflowTracker  # noqa: PLC0415

        return MlflowTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
