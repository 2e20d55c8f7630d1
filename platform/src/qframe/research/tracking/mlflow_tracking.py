"""MLflow implementation of :class:`ExperimentTracker`; the only module of the package that imports mlflow.

Uses ``MlflowClient`` with explicit run ids, never the fluent ``mlflow.start_run`` API: that keeps a process-wide
active-run stack, which would leak between two trackers in one notebook and into Dask/Ray workers.

Backends: an ``http(s)://`` tracking server (checked with ``GET /health`` up front so a wrong URI fails in
seconds, not after MLflow's retry back-off), or a local ``sqlite:///path/mlflow.db`` store whose artifacts go to
``<db dir>/mlartifacts`` unless ``artifact_location`` says otherwise. MLflow 3 refuses the old ``file://`` store
unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set; without it this tracker explains the sqlite alternative.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlparse

import pandas as pd
import structlog
from qframe.research.redaction import redact, remember_secrets_in_url
from qframe.research.tracking.base import (
    ExperimentTracker,
    RunStatus,
    SweepRun,
    TrackingError,
    TrackingUnavailableError,
)

log = structlog.get_logger(__name__)

# MLflow's per-request limits (mlflow.utils.validation); restated so importing this module needs no mlflow.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
RESULTS_ARTIFACT = "results/results.parquet"
FULL_PARAMS_ARTIFACT = "params/params.json"
_KEY_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. /]")
_T = TypeVar("_T")


def mlflow_key(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . space /`` in keys, up to 250 characters."""
    return _KEY_ALLOWED.sub("_", name)[:MAX_KEY_LENGTH]


def chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _fix_for(uri: str) -> str:
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        return (
            "start the tracking server (e.g. `mlflow server --host 127.0.0.1 --port 5000`) or point "
            "QFRAME_MLFLOW_TRACKING_URI / tracking_uri at a running one"
        )
    if scheme == "file":
        return (
            "use a local database store instead, e.g. sqlite:////abs/path/mlflow.db "
            "(or set MLFLOW_ALLOW_FILE_STORE=true for MLflow's deprecated file store)"
        )
    return "check the tracking URI, its credentials and that the store is writable"


def probe_tracking_server(uri: str, *, timeout_s: float) -> None:
    """Fail fast with the URI in the message when an http(s) tracking server does not answer ``/health``."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 -- scheme checked by caller
            status = response.status
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailableError(
            redact(f"MLflow tracking server at {uri} is not reachable ({reason}); {_fix_for(uri)}")
        ) from None
    if status != 200:
        raise TrackingUnavailableError(
            redact(f"MLflow tracking server at {uri} answered /health with HTTP {status}; {_fix_for(uri)}")
        )


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")


def _default_artifact_location(uri: str) -> str | None:
    """Where artifacts go when the caller names no place; None lets a tracking server decide.

    For a database store MLflow itself would pick ``./mlruns`` of whatever the current directory is, so
    SQLite gets ``<db dir>/mlartifacts`` and the other databases must be told (TrackingError otherwise).
    """
    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        return None
    if scheme != "sqlite":
        raise TrackingError(
            f"tracking URI {redact(uri)} is a database store, and MLflow would put its artifacts in ./mlruns of the "
            "current directory; pass artifact_location='s3://bucket/mlartifacts' or 'file:///abs/dir' "
            "(the qframe CLI uses <workdir>/mlartifacts), or track to an MLflow server (http://...)"
        )
    db_path = Path(uri.removeprefix("sqlite:///"))
    return (db_path.parent / "mlartifacts").resolve().as_uri()


class MlflowTracker(ExperimentTracker):
    """One parent run per sweep, nested runs per strategy, in ``experiment_name`` on ``tracking_uri``."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        *,
        artifact_location: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        if not isinstance(tracking_uri, str) or ("://" not in tracking_uri and not tracking_uri.startswith("sqlite:")):
            raise ValueError(
                f"tracking_uri {redact(tracking_uri)!r} is not a URI; use http://host:5000 or sqlite:////abs/path/mlflow.db"
            )
        if not experiment_name or not experiment_name.strip():
            raise ValueError("experiment_name must be a non-empty string, e.g. 'backtests'")
        remember_secrets_in_url(tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        location = artifact_location if artifact_location is not None else _default_artifact_location(tracking_uri)
        if urlparse(tracking_uri).scheme in ("http", "https"):
            probe_tracking_server(tracking_uri, timeout_s=connect_timeout_s)
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 -- keep mlflow out of `import qframe.research`

        with self._translate("open the tracking store"):
            # postgresql:// would mean psycopg2 to SQLAlchemy, which is not installed; psycopg 3 is.
            client_uri = (
                "postgresql+psycopg://" + tracking_uri.split("://", 1)[1]
                if tracking_uri.startswith(("postgresql://", "postgres://"))
                else tracking_uri
            )
            self._client = MlflowClient(tracking_uri=client_uri)
            self.experiment_id = self._experiment_id(location)
        self._sweep_strategies: dict[str, list[str]] = {}

    @property
    def client(self) -> Any:
        """The underlying ``MlflowClient`` (for reading runs back)."""
        return self._client

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        try:
            yield
        except TrackingError:
            raise
        except (MlflowException, OSError, ConnectionError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TrackingUnavailableError(
                redact(
                    f"MLflow could not {action} at {self.tracking_uri}: {message[:500]}; {_fix_for(self.tracking_uri)}"
                )
            ) from None

    def _experiment_id(self, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415

        experiment = self._client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                return str(self._client.create_experiment(self.experiment_name, artifact_location=artifact_location))
            except MlflowException:
                # Another process created it between our lookup and create.
                experiment = self._client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment {self.experiment_name!r} at {redact(self.tracking_uri)} is deleted; restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or use another name"
            )
        return str(experiment.experiment_id)

    def _log_batch(
        self,
        run_id: str,
        *,
        params: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415

        now = int(time.time() * 1000)
        param_entities = [Param(mlflow_key(k), v) for k, v in (params or {}).items()]
        tag_entities = [RunTag(mlflow_key(k), v) for k, v in (tags or {}).items()]
        metric_entities = [Metric(mlflow_key(k), v, now, 0) for k, v in (metrics or {}).items()]
        for batch in chunks(param_entities, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, params=batch)
        for tag_batch in chunks(tag_entities, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, tags=tag_batch)
        for metric_batch in chunks(metric_entities, min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH)):
            self._client.log_batch(run_id, metrics=metric_batch)

    @staticmethod
    def _split_long_params(params: dict[str, str]) -> tuple[dict[str, str], bool]:
        short: dict[str, str] = {}
        truncated = False
        for key, value in params.items():
            if len(value) > MAX_PARAM_VALUE_LENGTH:
                # Full value goes to params/params.json; the param keeps a readable, marked prefix.
                short[key] = value[: MAX_PARAM_VALUE_LENGTH - 40] + f"... (full value in {FULL_PARAMS_ARTIFACT})"
                truncated = True
            else:
                short[key] = value
        return short, truncated

    def _log_files(self, run_id: str, files: dict[str, Path], staging: Path) -> None:
        for key, local in files.items():
            rel = PurePosixPath(key)
            # MLflow names the artifact after the local file: stage a copy under the requested name.
            target_dir = staging / "stage" / _staging_dir(key)
            target_dir.mkdir(parents=True)
            target = target_dir / rel.name
            shutil.copyfile(local, target)
            parent = str(rel.parent)
            self._client.log_artifact(run_id, str(target), artifact_path=None if parent == "." else parent)

    def _end(self, run_id: str, status: RunStatus) -> None:
        self._client.set_terminated(run_id, status=status)

    def _open_sweep(self, name: str, params: dict[str, str], tags: dict[str, str]) -> SweepRun:
        short, truncated = self._split_long_params(params)
        with self._translate(f"start the sweep run {name!r}"):
            run = self._client.create_run(self.experiment_id, run_name=name, tags={**tags, "qframe.kind": "sweep"})
            run_id = str(run.info.run_id)
            try:
                self._log_batch(run_id, params=short)
                if truncated:
                    self._client.log_text(run_id, json.dumps(params, indent=2, sort_keys=True), FULL_PARAMS_ARTIFACT)
            except BaseException:
                self._end_quietly(run_id, "FAILED")
                raise
        self._sweep_strategies[run_id] = []
        log.info("mlflow_sweep_started", run_id=run_id, sweep=name, experiment=self.experiment_name)
        return SweepRun(run_id=run_id, name=name)

    def _close_sweep(self, run: SweepRun, status: RunStatus) -> None:
        self._sweep_strategies.pop(run.run_id, None)
        with self._translate(f"end the sweep run {run.run_id}"):
            self._end(run.run_id, status)
        log.info("mlflow_sweep_ended", run_id=run.run_id, status=status)

    def _end_quietly(self, run_id: str, status: RunStatus) -> None:
        try:
            self._end(run_id, status)
        except Exception:
            log.warning("mlflow_run_not_terminated", run_id=run_id, status=status, exc_info=True)

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
        short, truncated = self._split_long_params(params)
        with tempfile.TemporaryDirectory(prefix="qframe-mlflow-") as tmp:
            staging = Path(tmp)
            files = dict(artifacts)
            # Everything that can fail locally (Parquet conversion) happens before the run exists.
            if results_frame is not None:
                parquet = staging / "results.parquet"
                results_frame.to_parquet(parquet, index=False)
                files[RESULTS_ARTIFACT] = parquet
            if truncated:
                full = staging / "params.json"
                full.write_text(json.dumps(params, indent=2, sort_keys=True), encoding="utf-8")
                files[FULL_PARAMS_ARTIFACT] = full
            with self._translate(f"log strategy {strategy!r}"):
                run = self._client.create_run(
                    self.experiment_id,
                    run_name=strategy,
                    tags={**tags, "mlflow.parentRunId": sweep.run_id, "qframe.kind": "strategy"},
                )
                run_id = str(run.info.run_id)
                try:
                    self._log_batch(run_id, params=short, metrics=metrics)
                    self._log_files(run_id, files, staging)
                    self._end(run_id, "FINISHED")
                except BaseException:
                    self._end_quietly(run_id, "FAILED")
                    raise
        self._sweep_strategies.setdefault(sweep.run_id, []).append(run_id)
        log.info(
            "mlflow_strategy_logged",
            run_id=run_id,
            parent=sweep.run_id,
            strategy=strategy,
            metrics=len(metrics),
            artifacts=len(files),
        )
        return run_id

    def _log_sweep_metrics(self, sweep: SweepRun, metrics: dict[str, float], undefined: list[str]) -> None:
        with self._translate(f"log sweep metrics on run {sweep.run_id}"):
            tags = {"qframe.undefined_metrics": ",".join(sorted(undefined))} if undefined else None
            self._log_batch(sweep.run_id, metrics=metrics, tags=tags)


def _staging_dir(key: str) -> str:
    """A staging directory name unique per artifact key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
