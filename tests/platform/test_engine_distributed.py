"""Real Dask and Ray backends: identical frames to sequential, metrics, and a worker SIGKILLed mid-sweep.

Each test starts its own local cluster (2 single-threaded worker processes on 127.0.0.1) and closes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import structlog
from prometheus_client import CollectorRegistry
from qframe.research.backtesting.engine import DistributedBacktestEngine
from qframe.research.backtesting.results import BacktestResults
from qframe.research.backtesting.sweep_plan import as_market_data
from qframe.research.backtesting.types import MarketData

from tests.harness.engine_probe import (
    PROBE_DELAY_ENV,
    PROBE_DIR_ENV,
    PROBE_GATE_ENV,
    probed_evaluate,
    read_evaluations,
)
from tests.harness.engine_workload import GRIDS, STRATEGIES, n_combinations, workload_bars

pytestmark = pytest.mark.services

N_SPLITS = 3
PURGE = 5


@pytest.fixture(scope="module")
def market() -> dict[str, MarketData]:
    return as_market_data(workload_bars())


@pytest.fixture(scope="module")
def reference(market: dict[str, MarketData]) -> BacktestResults:
    with DistributedBacktestEngine("sequential", block_size=3, progress=False) as engine:
        return engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)


def _key_columns(frame: pd.DataFrame) -> list[str]:
    params = sorted(column for column in frame.columns if column.startswith("param_"))
    return ["strategy", "dataset", "split_id", "sample", *params]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(_key_columns(frame), kind="stable").reset_index(drop=True)


def _assert_same_rows(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    keys = _key_columns(reference)
    assert not frame.duplicated(keys).any(), "a combination appears twice"
    assert len(frame) == len(reference)
    pd.testing.assert_frame_equal(_sorted(frame), _sorted(reference), check_exact=True)


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_backend_gives_the_sequential_frame_exactly(
    backend: str, market: dict[str, MarketData], reference: BacktestResults
) -> None:
    registry = CollectorRegistry()
    with (
        structlog.testing.capture_logs() as logs,
        DistributedBacktestEngine(backend, max_workers=2, block_size=3, registry=registry, progress=False) as engine,
    ):
        assert engine.backend == backend, engine.fallback_reasons
        results = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)
        assert engine.compute.n_workers == 2
        # A second sweep over the same data right after the first: data shipped again, nothing stale.
        again = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)
    pd.testing.assert_frame_equal(again.frame, results.frame, check_exact=True)

    assert results.backend == backend
    assert results.sweep_id == reference.sweep_id  # same inputs, same sweep, whatever runs it
    # Rows come back in task order, not completion order, so even the unsorted frames are equal.
    pd.testing.assert_frame_equal(results.frame, reference.frame, check_exact=True)
    _assert_same_rows(results.frame, reference.frame)

    splits = N_SPLITS
    for strategy, combos in n_combinations().items():
        evaluated = registry.get_sample_value("qframe_backtests_total", {"strategy": strategy, "backend": backend})
        # every combination on every dataset, once in-sample and once out-of-sample per split, in two sweeps
        assert evaluated == combos * len(market) * splits * 2 * 2
    tasks = registry.get_sample_value("qframe_backtest_task_duration_seconds_count", {"backend": backend})
    assert tasks == results.n_tasks * 2
    busy = registry.get_sample_value("qframe_backtest_task_duration_seconds_sum", {"backend": backend})
    assert busy is not None
    assert busy > 0
    started = [entry for entry in logs if entry["event"] == "sweep started"]
    assert [entry["sweep_id"] for entry in started] == [results.sweep_id] * 2
    assert started[0]["backend"] == backend


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Set before the cluster starts: worker processes inherit the environment of the process that spawns them.
    monkeypatch.setenv(PROBE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(PROBE_GATE_ENV, str(tmp_path / "gate-open"))
    monkeypatch.setenv(PROBE_DELAY_ENV, "0.05")
    return tmp_path


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_worker_killed_mid_sweep_loses_and_duplicates_nothing(
    backend: str, probe: Path, market: dict[str, MarketData], reference: BacktestResults
) -> None:
    outcome: dict[str, BacktestResults | BaseException] = {}
    with DistributedBacktestEngine(
        backend, max_workers=2, block_size=3, progress=False, evaluator=probed_evaluate
    ) as engine:
        assert engine.backend == backend, engine.fallback_reasons

        def sweep() -> None:
            try:
                outcome["results"] = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)
            except BaseException as exc:  # handed to the test thread
                outcome["error"] = exc

        runner = threading.Thread(target=sweep, name="sweep")
        runner.start()
        # Both workers hold a task at the closed gate: the victim is mid-task for certain, then the gate opens.
        _wait_for(lambda: len({pid for _, pid in read_evaluations(probe)}) >= 2, 120, "both workers to start a task")
        victim_task, victim_pid = read_evaluations(probe)[-1]
        assert victim_pid != os.getpid()
        os.kill(victim_pid, signal.SIGKILL)
        (probe / "gate-open").touch()
        runner.join(timeout=300)
        assert not runner.is_alive(), "the sweep did not finish after a worker was killed"

    if "error" in outcome:
        raise AssertionError(f"the sweep failed after a worker was killed: {outcome['error']!r}")
    results = outcome["results"]
    assert isinstance(results, BacktestResults)
    evaluations = read_evaluations(probe)
    # The killed task ran again, in another process: the retry, not luck, completed the sweep.
    reruns = [pid for task_id, pid in evaluations if task_id == victim_task]
    assert len(reruns) >= 2
    assert reruns[-1] != victim_pid
    assert {task_id for task_id, _ in evaluations} == set(results.frame["task_id"])
    pd.testing.assert_frame_equal(results.frame, reference.frame, check_exact=True)
    _assert_same_rows(results.frame, reference.frame)


def test_engine_uses_a_running_dask_scheduler_and_leaves_it_running(
    market: dict[str, MarketData], reference: BacktestResults
) -> None:
    from distributed import Client, LocalCluster  # noqa: PLC0415

    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, silence_logs=40
    ) as cluster:
        address = cluster.scheduler_address
        with DistributedBacktestEngine("dask", address=address, block_size=3, progress=False) as engine:
            assert engine.backend == "dask", engine.fallback_reasons
            assert address in engine.compute.description
            results = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)
        pd.testing.assert_frame_equal(results.frame, reference.frame, check_exact=True)
        # The engine closed its client only: the scheduler and its worker still serve a new client.
        with Client(address, timeout=10) as client:  # type: ignore[no-untyped-call]
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
            assert client.submit(sum, [1, 2]).result() == 3


def test_engine_uses_a_running_ray_runtime_and_leaves_it_running(
    monkeypatch: pytest.MonkeyPatch, market: dict[str, MarketData], reference: BacktestResults
) -> None:
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, as the engine does
    import ray  # noqa: PLC0415

    # Ray's unix sockets live under the temp dir and their paths must stay short.
    temp_dir = tempfile.mkdtemp(prefix="qfray-test-", dir="/tmp")
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp_dir,
    )
    try:
        with DistributedBacktestEngine("ray", block_size=3, progress=False) as engine:
            assert engine.backend == "ray", engine.fallback_reasons
            results = engine.run_backtest_sync(STRATEGIES, market, GRIDS, n_splits=N_SPLITS, purge=PURGE)
        pd.testing.assert_frame_equal(results.frame, reference.frame, check_exact=True)
        assert ray.is_initialized(), "the engine shut down a Ray runtime it did not start"
        assert ray.get(ray.put(41)) + 1 == 42
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
