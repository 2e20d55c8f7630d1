"""Where backtest tasks run: in this process, on a Dask cluster or on a Ray cluster.

Every backend runs the same pure ``run_task`` on the same tasks, so results do not depend on the backend;
backends differ only in how data reaches workers (shipped once per worker: Dask ``scatter(broadcast=True)``,
Ray ``ray.put``) and how a lost worker is survived (Dask reschedules the tasks of a dead worker and retries
failed ones; Ray resubmits tasks whose worker died, up to ``max_retries``). Distributed libraries are
imported only when a backend starts, so importing this module costs nothing and a missing library is a
fallback, not a crash.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import pandas as pd
import structlog
from qframe.research.backend_names import BACKEND_NAMES

if TYPE_CHECKING:
    from qframe.research.backtesting.types import BacktestTask, MarketData

Evaluator = Callable[["BacktestTask", "MarketData"], pd.DataFrame]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3
RAY_OBJECT_STORE_BYTES = 200 * 1024**2
# Ray decides between loopback and the host's routable address from this variable when it is imported.
_RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

logger = structlog.get_logger(__name__)


class BackendUnavailableError(RuntimeError):
    """A backend cannot be used here: not installed, or its cluster cannot be reached."""


class BackendError(RuntimeError):
    """A task failed on a backend even after retries; the message names the task."""


@dataclass(frozen=True)
class TaskOutcome:
    """What one task returns from wherever it ran."""

    task_id: str
    frame: pd.DataFrame
    seconds: float
    worker_pid: int


def run_task(task: BacktestTask, data: MarketData, evaluator: Evaluator | None = None) -> TaskOutcome:
    """Evaluate one task (a block of parameter combinations) on one dataset; what every backend runs.

    ``evaluator`` defaults to ``evaluate_task``; another module-level function (picklable by reference) can
    stand in, e.g. to instrument evaluations.
    """
    if task.dataset != data.name:
        raise ValueError(f"task {task.task_id} is for dataset {task.dataset!r} but was given {data.name!r}")
    if evaluator is None:
        # Imported here so that starting a backend does not compile strategy kernels in the driver.
        from qframe.research.backtesting.evaluate import evaluate_task  # noqa: PLC0415

        evaluator = evaluate_task
    started = time.perf_counter()
    frame = evaluator(task, data)
    return TaskOutcome(task.task_id, frame, time.perf_counter() - started, os.getpid())


ResultCallback = Callable[[TaskOutcome], None]


class ComputeBackend(ABC):
    """Runs tasks and hands each outcome to ``on_result`` as soon as it is ready (once per task)."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Connect to or start the cluster; raises BackendUnavailableError when it is not installed or reachable."""
        self._started = True

    def close(self) -> None:
        """Release what this backend started (never a cluster it merely connected to)."""
        self._started = False

    @property
    def n_workers(self) -> int:
        return 1

    @property
    def description(self) -> str:
        return self.name

    @abstractmethod
    def run(
        self,
        tasks: Sequence[BacktestTask],
        datasets: Mapping[str, MarketData],
        *,
        on_result: ResultCallback,
        evaluator: Evaluator | None = None,
    ) -> None: ...

    def warm_up(self, task: BacktestTask, data: MarketData, evaluator: Evaluator | None = None) -> None:
        """Run ``task`` on every worker (compiles numba kernels there) and drop the results; for benchmarks."""
        run_task(task, data, evaluator)

    def __enter__(self) -> ComputeBackend:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_datasets(tasks: Sequence[BacktestTask], datasets: Mapping[str, MarketData]) -> None:
    missing = sorted({task.dataset for task in tasks} - set(datasets))
    if missing:
        raise ValueError(f"tasks refer to datasets that were not given: {missing}; pass them in `datasets`")


class SequentialBackend(ComputeBackend):
    """Runs tasks one after the other in this process: the reference every other backend must match."""

    name = "sequential"

    def run(
        self,
        tasks: Sequence[BacktestTask],
        datasets: Mapping[str, MarketData],
        *,
        on_result: ResultCallback,
        evaluator: Evaluator | None = None,
    ) -> None:
        _check_datasets(tasks, datasets)
        for task in tasks:
            on_result(run_task(task, datasets[task.dataset], evaluator))


class _ClusterBackend(ComputeBackend):
    """What the Dask and Ray backends share: where the cluster is, how many local workers, retry policy."""

    label: ClassVar[str]

    def __init__(
        self,
        address: str | None = None,
        *,
        max_workers: int | None = None,
        retries: int = DEFAULT_RETRIES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.address = address
        self.max_workers = max_workers
        self.retries = retries
        self.connect_timeout = connect_timeout

    def _not_started(self) -> RuntimeError:
        return RuntimeError(f"the {self.label} backend is not started; call start() or use it as a context manager")


class DaskBackend(_ClusterBackend):
    """Dask: a remote scheduler at ``address`` or a LocalCluster of single-threaded worker processes."""

    name = "dask"
    label = "Dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        max_workers: int | None = None,
        retries: int = DEFAULT_RETRIES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__(address, max_workers=max_workers, retries=retries, connect_timeout=connect_timeout)
        self._client: Any = None
        self._cluster: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise self._not_started()
        return self._client

    def start(self) -> None:
        if self._started:
            return
        try:
            from distributed import Client, LocalCluster  # noqa: PLC0415 - optional, imported only when used
        except ImportError as exc:
            raise BackendUnavailableError(f"dask.distributed is not installed ({exc})") from exc
        if self.address is not None:
            try:
                self._client = Client(self.address, timeout=self.connect_timeout)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise BackendUnavailableError(f"scheduler {self.address} not reachable: {exc}") from exc
        else:
            n_workers = self.max_workers or os.cpu_count() or 1
            if sys.platform == "win32":  # no subprocess workers there: the user's script needs a __main__ guard
                self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=n_workers,
                    threads_per_worker=1,  # numba kernels hold the GIL-free core; one task per process is the unit
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=40,
                )
            else:
                # Workers as fresh interpreters: a script without a __main__ guard is not re-run in each of them.
                from qframe.research.backtesting.dask_local import local_cluster  # noqa: PLC0415

                self._cluster = local_cluster(n_workers)
            self._client = Client(self._cluster)  # type: ignore[no-untyped-call]
            self._client.wait_for_workers(n_workers, timeout=max(60.0, self.connect_timeout))
        self._started = True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self._started = False

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    @property
    def description(self) -> str:
        where = self.address or "LocalCluster"
        return f"dask ({where}, {self.n_workers} workers)"

    def warm_up(self, task: BacktestTask, data: MarketData, evaluator: Evaluator | None = None) -> None:
        self.client.run(run_task, task, data, evaluator)

    def run(
        self,
        tasks: Sequence[BacktestTask],
        datasets: Mapping[str, MarketData],
        *,
        on_result: ResultCallback,
        evaluator: Evaluator | None = None,
    ) -> None:
        from distributed import as_completed  # noqa: PLC0415

        _check_datasets(tasks, datasets)
        needed = {task.dataset for task in tasks}
        client = self.client
        # Once per worker, not once per task: tasks then carry only a reference to the dataset. Unhashed keys:
        # a content-hashed key would be shared with the previous sweep's copy, whose release is still in flight.
        shipped = {name: client.scatter(datasets[name], broadcast=True, hash=False) for name in sorted(needed)}
        futures = [
            client.submit(
                run_task,
                task,
                shipped[task.dataset],
                evaluator,
                key=f"qframe-backtest-{task.task_id}",
                retries=self.retries,
                pure=False,
            )
            for task in tasks
        ]
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                try:
                    outcome: TaskOutcome = future.result()
                except Exception as exc:
                    raise BackendError(f"dask task {future.key} failed after {self.retries} retries: {exc}") from exc
                future.release()
                on_result(outcome)
        finally:
            client.cancel(futures)
            client.cancel(list(shipped.values()))


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens within timeout, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} not reachable within {timeout:g} s ({exc})"


class RayBackend(_ClusterBackend):
    """Ray: a cluster at ``address`` (``ray://host:10001`` or ``host:6379``) or a small local one.

    A local Ray binds 127.0.0.1 only, caps its object store, has no dashboard and keeps its session files
    in a temporary directory that ``close`` deletes. If Ray is already initialised in this process (a
    notebook), that runtime is used and left running.
    """

    name = "ray"
    label = "Ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        max_workers: int | None = None,
        retries: int = DEFAULT_RETRIES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        object_store_memory: int = RAY_OBJECT_STORE_BYTES,
    ) -> None:
        super().__init__(address, max_workers=max_workers, retries=retries, connect_timeout=connect_timeout)
        self.object_store_memory = object_store_memory
        self._owns_runtime = False
        self._temp_dir: str | None = None
        self._remote: Any = None
        self._ray: Any = None

    def start(self) -> None:
        if self._started:
            return
        if self.address is None:
            # Must precede the first import of ray, which reads it once; only loopback for a local runtime.
            os.environ.setdefault(_RAY_LOOPBACK_ENV, "0")
        try:
            import ray  # noqa: PLC0415 - optional, imported only when used
        except ImportError as exc:
            raise BackendUnavailableError(f"ray is not installed ({exc})") from exc
        self._ray = ray
        if not ray.is_initialized():
            if self.address is not None:
                self._connect(ray, self.address)
            else:
                self._start_local(ray)
            self._owns_runtime = True
        self._remote = ray.remote(max_retries=self.retries, retry_exceptions=False)(run_task)
        self._started = True

    def _connect(self, ray: Any, address: str) -> None:
        parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
        if parts.hostname and parts.port:
            # ray.init retries an unreachable address for a long time; a plain TCP probe fails fast and clearly.
            reason = _tcp_reachable(parts.hostname, parts.port, self.connect_timeout)
            if reason is not None:
                raise BackendUnavailableError(f"ray cluster {address}: {reason}")
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, TimeoutError, OSError, RuntimeError) as exc:
            raise BackendUnavailableError(f"ray cluster {address} not reachable: {exc}") from exc

    def _start_local(self, ray: Any) -> None:
        # Short path: Ray puts unix sockets under it and socket paths are limited to ~107 characters.
        self._temp_dir = tempfile.mkdtemp(prefix="qfray-", dir="/tmp" if os.path.isdir("/tmp") else None)  # noqa: S108
        try:
            ray.init(
                num_cpus=self.max_workers or os.cpu_count() or 1,
                object_store_memory=self.object_store_memory,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _node_ip_address="127.0.0.1",
                _temp_dir=self._temp_dir,
            )
        except Exception as exc:
            self._remove_temp_dir()
            raise BackendUnavailableError(f"local ray runtime could not start: {exc}") from exc

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def close(self) -> None:
        if self._owns_runtime and self._ray is not None:
            self._ray.shutdown()
            self._owns_runtime = False
        self._remove_temp_dir()
        self._remote = None
        self._started = False

    @property
    def n_workers(self) -> int:
        if self._ray is None:
            raise self._not_started()
        return int(self._ray.cluster_resources().get("CPU", 1))

    def warm_up(self, task: BacktestTask, data: MarketData, evaluator: Evaluator | None = None) -> None:
        # Ray cannot address worker processes one by one: enough concurrent copies reach every one of them
        # in practice, since each copy occupies its worker for the whole evaluation.
        if self._ray is None or self._remote is None:
            raise self._not_started()
        shipped = self._ray.put(data)
        self._ray.get([self._remote.remote(task, shipped, evaluator) for _ in range(4 * self.n_workers)])

    @property
    def description(self) -> str:
        where = self.address or "local"
        return f"ray ({where}, {self.n_workers} CPUs)"

    def run(
        self,
        tasks: Sequence[BacktestTask],
        datasets: Mapping[str, MarketData],
        *,
        on_result: ResultCallback,
        evaluator: Evaluator | None = None,
    ) -> None:
        if self._ray is None or self._remote is None:
            raise self._not_started()
        ray = self._ray
        _check_datasets(tasks, datasets)
        # One copy in the object store; workers on a node map it zero-copy instead of receiving it per task.
        shipped = {name: ray.put(datasets[name]) for name in sorted({task.dataset for task in tasks})}
        pending = {self._remote.remote(task, shipped[task.dataset], evaluator): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        outcome: TaskOutcome = ray.get(ref)
                    except Exception as exc:
                        raise BackendError(
                            f"ray task {task.task_id} failed after {self.retries} retries: {exc}"
                        ) from exc
                    on_result(outcome)
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)


@dataclass
class BackendResolution:
    """The started backend and, when it is not the one asked for, why."""

    backend: ComputeBackend
    requested: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (backend, reason)

    @property
    def fell_back(self) -> bool:
        return bool(self.skipped)


def _candidates(requested: str, address: str | None) -> Iterator[str]:
    if requested == "auto":
        if address is not None and address.startswith("ray://"):
            yield "ray"
        elif address is not None:
            yield "dask"
        else:
            yield from ("dask", "ray")
    elif requested != "sequential":
        yield requested
    yield "sequential"


def make_backend(
    name: str,
    *,
    address: str | None = None,
    max_workers: int | None = None,
    retries: int = DEFAULT_RETRIES,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> ComputeBackend:
    if name == "sequential":
        return SequentialBackend()
    if name == "dask":
        return DaskBackend(address, max_workers=max_workers, retries=retries, connect_timeout=connect_timeout)
    if name == "ray":
        return RayBackend(address, max_workers=max_workers, retries=retries, connect_timeout=connect_timeout)
    raise ValueError(f"unknown compute backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def validate_backend_options(compute_backend: str, max_workers: int | None, address: str | None) -> None:
    if compute_backend not in BACKEND_NAMES:
        raise ValueError(
            f"unknown compute_backend {compute_backend!r}; choose one of {', '.join(BACKEND_NAMES)} "
            "('auto' tries dask, then ray, then runs sequentially)"
        )
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be at least 1 (or None for one per CPU), got {max_workers}")
    if address is not None and compute_backend == "sequential":
        raise ValueError(f"address {address!r} was given with compute_backend='sequential'; drop one of them")


def resolve_backend(
    compute_backend: str = "auto",
    *,
    address: str | None = None,
    max_workers: int | None = None,
    retries: int = DEFAULT_RETRIES,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    log: Any = None,
) -> BackendResolution:
    """Start the requested backend, falling back (dask -> ray -> sequential for "auto", else -> sequential).

    A fallback is logged once, as one warning naming each backend skipped, why, and what runs instead.
    """
    validate_backend_options(compute_backend, max_workers, address)
    log = log if log is not None else logger
    skipped: list[tuple[str, str]] = []
    for candidate in _candidates(compute_backend, address):
        backend = make_backend(
            candidate,
            # Only the backend the address was meant for connects to it; a fallback runs locally.
            address=address if candidate in ("dask", "ray") and not skipped else None,
            max_workers=max_workers,
            retries=retries,
            connect_timeout=connect_timeout,
        )
        try:
            backend.start()
        except BackendUnavailableError as exc:
            backend.close()
            skipped.append((candidate, str(exc)))
            if address is not None:
                # A cluster address was asked for: starting a local cluster of another kind instead would
                # surprise more than it helps, so the only fallback left is this process.
                backend = SequentialBackend()
                backend.start()
                return _report(BackendResolution(backend, compute_backend, skipped), log)
            continue
        return _report(BackendResolution(backend, compute_backend, skipped), log)
    raise AssertionError("unreachable: the sequential backend always starts")  # pragma: no cover


def _report(resolution: BackendResolution, log: Any) -> BackendResolution:
    if resolution.fell_back:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in resolution.skipped)
        log.warning(
            "compute backend fallback",
            requested=resolution.requested,
            unavailable=[name for name, _ in resolution.skipped],
            reasons=reasons,
            running_on=resolution.backend.name,
            message=f"{resolution.requested!r} backend unavailable ({reasons}); running on "
            f"{resolution.backend.name!r} instead",
        )
    return resolution
