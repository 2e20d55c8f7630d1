"""The small experiment-tracking interface the sweeps use, and an in-memory fake for unit tests.

Shape of what is recorded: one parent run per sweep (sweep config, grid, backend, dataset names as params;
aggregate metrics), one nested run per strategy (its grid and the best combination's params, summary metrics,
the full results table, tear sheet files). Never one run per parameter combination: a 10,000-combination grid
would drown the tracking server and the UI.

:class:`ExperimentTracker` keeps the run life cycle in one place: inputs are validated before any run is created,
and a sweep body that raises ends the parent run as FAILED (KILLED on Ctrl-C) instead of leaving it RUNNING.
"""

from __future__ import annotations

import json
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import pandas as pd
import structlog

log = structlog.get_logger(__name__)

RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]


class TrackingError(RuntimeError):
    """A tracking call failed; the message names the tracking URI and what to do."""


class TrackingUnavailableError(TrackingError):
    """The tracking backend cannot be reached or opened."""


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    name: str


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys; lists, tuples and other values become compact JSON / str.

    ``{"grid": {"fast": [5, 10]}, "backend": "dask"}`` -> ``{"grid.fast": "[5, 10]", "backend": "dask"}``.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"parameter names must be non-empty strings, got {key!r}")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, str):
            flat[name] = value
        elif isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
            flat[name] = json.dumps([_plain(v) for v in items], default=str)
        else:
            flat[name] = str(_plain(value))
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def clean_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Finite float metrics, plus the names of those that were undefined (NaN/inf/None) and were left out.

    Undefined values are reported separately rather than logged: trackers store them inconsistently (NaN, or
    inf clipped to the largest float), and a clipped value would sort first in a metric comparison.
    """
    finite: dict[str, float] = {}
    undefined: list[str] = []
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric names must be non-empty strings, got {key!r}")
        if value is None:
            undefined.append(key)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"metric {key!r} must be a number, got {type(value).__name__} {value!r}")
        number = float(value)
        if math.isfinite(number):
            finite[key] = number
        else:
            undefined.append(key)
    return finite, undefined


def validate_artifacts(artifacts: Mapping[str, Path | str] | None) -> dict[str, Path]:
    """``{"tear_sheet/ma.png": Path(...)}``: keys are relative artifact paths in the run, values existing files."""
    checked: dict[str, Path] = {}
    for key, path in (artifacts or {}).items():
        rel = PurePosixPath(key)
        if not key or rel.is_absolute() or ".." in rel.parts or key.endswith("/"):
            raise ValueError(
                f"artifact name {key!r} must be a relative file path inside the run, e.g. 'tear_sheet/report.png'"
            )
        local = Path(path)
        if not local.is_file():
            raise ValueError(f"artifact {key!r}: {local} is not an existing file; write it before logging it")
        checked[key] = local
    return checked


class ExperimentTracker(ABC):
    """``with tracker.start_sweep(name, params, tags): tracker.log_strategy(...)`` -- see the module docstring."""

    def __init__(self) -> None:
        self._active: SweepRun | None = None

    @property
    def active_sweep(self) -> SweepRun | None:
        return self._active

    @contextmanager
    def start_sweep(
        self, name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
    ) -> Iterator[SweepRun]:
        """Parent run for one sweep; ends FINISHED, or FAILED (KILLED on KeyboardInterrupt) if the body raises."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("sweep name must be a non-empty string, e.g. 'ma-crossover-grid'")
        if self._active is not None:
            raise TrackingError(
                f"sweep {self._active.name!r} is still active on this tracker; finish it before starting {name!r}"
            )
        flat = flatten_params(params or {})
        run = self._open_sweep(name, flat, {str(k): str(v) for k, v in (tags or {}).items()})
        self._active = run
        status: RunStatus = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._active = None
            try:
                self._close_sweep(run, status)
            except Exception:
                if status == "FINISHED":
                    raise
                # Keep the body's exception as the one the caller sees.
                log.warning("tracking_close_failed", run_id=run.run_id, status=status, exc_info=True)

    def log_strategy(
        self,
        strategy: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        results_frame: pd.DataFrame | None = None,
        artifacts: Mapping[str, Path | str] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Nested run for one strategy under the active sweep; returns its run id.

        ``params``: the strategy's grid/config and best parameters; ``metrics``: summary figures (non-finite ones
        are listed in the ``qframe.undefined_metrics`` tag instead); ``results_frame``: the full results table
        (stored as Parquet); ``artifacts``: relative artifact path -> local file (e.g. the tear sheet).
        """
        if not isinstance(strategy, str) or not strategy.strip():
            raise ValueError("strategy must be a non-empty name, e.g. 'ma_crossover'")
        sweep = self._active
        if sweep is None:
            raise TrackingError("log_strategy needs an active sweep: call it inside `with tracker.start_sweep(...)`")
        if results_frame is not None and not isinstance(results_frame, pd.DataFrame):
            raise TypeError(f"results_frame must be a pandas DataFrame, got {type(results_frame).__name__}")
        flat = flatten_params(params)
        finite, undefined = clean_metrics(metrics)
        files = validate_artifacts(artifacts)
        run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        run_tags["qframe.strategy"] = strategy
        if undefined:
            run_tags["qframe.undefined_metrics"] = ",".join(sorted(undefined))
        return self._log_strategy(
            sweep,
            strategy=strategy,
            params=flat,
            metrics=finite,
            results_frame=results_frame,
            artifacts=files,
            tags=run_tags,
        )

    def log_sweep_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Aggregate metrics on the parent run of the active sweep."""
        sweep = self._active
        if sweep is None:
            raise TrackingError("log_sweep_metrics needs an active sweep: call it inside `with tracker.start_sweep()`")
        finite, undefined = clean_metrics(metrics)
        self._log_sweep_metrics(sweep, finite, undefined)

    @abstractmethod
    def _open_sweep(self, name: str, params: dict[str, str], tags: dict[str, str]) -> SweepRun: ...

    @abstractmethod
    def _close_sweep(self, run: SweepRun, status: RunStatus) -> None: ...

    @abstractmethod
    def _log_strategy(
        self,
        sweep: SweepRun,
        *,
        strategy: str,
        params: dict[str, str],
        metrics: dict[str, float],
        results_frame: pd.DataFrame | None,
        artifacts: dict[str, Path],
        tags: dict[str, str],
    ) -> str: ...

    @abstractmethod
    def _log_sweep_metrics(self, sweep: SweepRun, metrics: dict[str, float], undefined: list[str]) -> None: ...


@dataclass
class RecordedStrategy:
    run_id: str
    strategy: str
    params: dict[str, str]
    metrics: dict[str, float]
    results: pd.DataFrame | None
    artifacts: dict[str, bytes]
    tags: dict[str, str]


@dataclass
class RecordedSweep:
    run_id: str
    name: str
    params: dict[str, str]
    tags: dict[str, str]
    status: RunStatus = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    undefined_metrics: list[str] = field(default_factory=list)
    strategies: list[RecordedStrategy] = field(default_factory=list)


class InMemoryTracker(ExperimentTracker):
    """Records everything in this object (results frames copied, artifact bytes read at log time)."""

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[RecordedSweep] = []

    def _find(self, run_id: str) -> RecordedSweep:
        for sweep in self.sweeps:
            if sweep.run_id == run_id:
                return sweep
        raise TrackingError(f"unknown sweep run {run_id}")

    def _open_sweep(self, name: str, params: dict[str, str], tags: dict[str, str]) -> SweepRun:
        run = SweepRun(run_id=uuid.uuid4().hex, name=name)
        self.sweeps.append(RecordedSweep(run_id=run.run_id, name=name, params=dict(params), tags=dict(tags)))
        return run

    def _close_sweep(self, run: SweepRun, status: RunStatus) -> None:
        self._find(run.run_id).status = status

    def _log_strategy(
        self,
        sweep: SweepRun,
        *,
        strategy: str,
        params: dict[str, str],
        metrics: dict[str, float],
        results_frame: pd.DataFrame | None,
        artifacts: dict[str, Path],
        tags: dict[str, str],
    ) -> str:
        recorded = RecordedStrategy(
            run_id=uuid.uuid4().hex,
            strategy=strategy,
            params=dict(params),
            metrics=dict(metrics),
            results=None if results_frame is None else results_frame.copy(),
            artifacts={key: path.read_bytes() for key, path in artifacts.items()},
            tags=dict(tags),
        )
        self._find(sweep.run_id).strategies.append(recorded)
        return recorded.run_id

    def _log_sweep_metrics(self, sweep: SweepRun, metrics: dict[str, float], undefined: list[str]) -> None:
        recorded = self._find(sweep.run_id)
        recorded.metrics.update(metrics)
        recorded.undefined_metrics.extend(undefined)
