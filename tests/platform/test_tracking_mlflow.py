"""MlflowTracker against a real MLflow tracking server, a local sqlite store and the legacy file store."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from qframe.research.backtesting.analytics import AdvancedPerformanceAnalyzer
from qframe.research.reporting import log_strategy_report
from qframe.research.tracking import TrackingError, TrackingUnavailableError
from qframe.research.tracking.mlflow_tracking import FULL_PARAMS_ARTIFACT, RESULTS_ARTIFACT, MlflowTracker

from tools.services import free_port

pytestmark = pytest.mark.services


def results_table(strategy: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = [(fast, slow) for fast in (5, 10, 20) for slow in (50, 100)]
    return pd.DataFrame(
        {
            "task_id": [f"{strategy}-{i // 3}" for i in range(len(grid))],
            "strategy": strategy,
            "dataset": "SYN",
            "split_id": 0,
            "param_fast": [f for f, _ in grid],
            "param_slow": [s for _, s in grid],
            "sharpe": rng.normal(0.5, 0.5, len(grid)),
            "total_return": rng.normal(0.1, 0.1, len(grid)),
            "max_drawdown": -rng.uniform(0.05, 0.3, len(grid)),
            "n_trades": rng.integers(5, 50, len(grid)),
        }
    )


def curve(seed: int) -> tuple[pd.Series, pd.Series]:
    index = pd.date_range("2024-01-01", periods=200, freq="D", tz="UTC")
    returns = pd.Series(np.random.default_rng(seed).normal(0.0005, 0.01, 200), index=index)
    return 1e6 * (1 + returns).cumprod(), returns


def experiment() -> str:
    return f"qframe-test-{uuid.uuid4().hex[:8]}"


def runs_of(client: MlflowClient, experiment_id: str) -> list:  # type: ignore[type-arg]
    return list(client.search_runs([experiment_id], max_results=1000))


def test_sweep_on_real_server_parent_children_metrics_artifacts(mlflow_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tracker = MlflowTracker(mlflow_server.tracking_uri, experiment())
    analyzer = AdvancedPerformanceAnalyzer(n_simulations=200)
    many_params = {f"p{i:03d}": i for i in range(150)}  # > 100 params: needs two log_batch requests
    long_value = "x" * 7000  # > MLflow's 6000-character param limit
    tables = {name: results_table(name, seed) for seed, name in enumerate(("ma_crossover", "mean_reversion"))}
    with tracker.start_sweep(
        "demo-sweep",
        {
            "backend": "dask",
            "datasets": ["SYN"],
            "grid": {"fast": [5, 10, 20]},
            "many": many_params,
            "long": long_value,
        },
        {"team": "research"},
    ) as sweep:
        child_ids = {}
        for seed, (name, table) in enumerate(tables.items()):
            equity, returns = curve(seed)
            report = log_strategy_report(
                tracker,
                name,
                table,
                equity=equity,
                returns=returns,
                out_dir=tmp_path / name,
                heatmap_params=("fast", "slow"),
                analyzer=analyzer,
            )
            child_ids[name] = report.run_id
        tracker.log_sweep_metrics({f"m{i:04d}": float(i) for i in range(1200)} | {"undefined": float("nan")})

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    parent = client.get_run(sweep.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["team"] == "research"
    assert parent.data.tags["qframe.undefined_metrics"] == "undefined"
    assert parent.data.params["backend"] == "dask"
    assert parent.data.params["grid.fast"] == "[5, 10, 20]"
    assert parent.data.params["many.p149"] == "149"
    assert len(parent.data.params["long"]) <= 6000
    assert FULL_PARAMS_ARTIFACT in {a.path for a in client.list_artifacts(sweep.run_id, "params")}
    assert len(parent.data.metrics) == 1200
    assert parent.data.metrics["m1199"] == 1199.0

    runs = runs_of(client, tracker.experiment_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.run_id]
    assert {r.info.run_id for r in children} == set(child_ids.values())
    assert len(runs) == 3  # one parent + one per strategy, never one per combination
    for name, run_id in child_ids.items():
        child = client.get_run(run_id)
        assert child.info.status == "FINISHED"
        assert child.info.run_name == name
        table = tables[name]
        per_combo = table.groupby(["param_fast", "param_slow"])["sharpe"].mean()
        best_fast, best_slow = per_combo.idxmax()
        assert child.data.params["best.fast"] == str(best_fast)
        assert child.data.params["best.slow"] == str(best_slow)
        assert child.data.metrics["best.sharpe"] == pytest.approx(per_combo.max())
        assert child.data.metrics["combinations"] == 6.0
        assert "analysis.sharpe_ratio" in child.data.metrics
        paths = {a.path for a in client.list_artifacts(run_id, "results")}
        paths |= {a.path for a in client.list_artifacts(run_id, "tear_sheet")}
        assert paths == {RESULTS_ARTIFACT, f"tear_sheet/{name}.png", f"tear_sheet/{name}.html"}
        local = client.download_artifacts(run_id, RESULTS_ARTIFACT, str(tmp_path / f"dl-{name}"))
        pd.testing.assert_frame_equal(pd.read_parquet(local), table)
        png = client.download_artifacts(run_id, f"tear_sheet/{name}.png", str(tmp_path / f"png-{name}"))
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failures_end_runs_failed_never_running(mlflow_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    tracker = MlflowTracker(mlflow_server.tracking_uri, experiment())
    table = results_table("ma_crossover", 1)
    seen: dict[str, str] = {}

    def doomed_sweep() -> None:
        with tracker.start_sweep("doomed") as sweep:
            seen["parent"] = sweep.run_id
            seen["ok"] = tracker.log_strategy("ma_crossover", {"fast": 5}, {"sharpe": 1.0}, results_frame=table)

            def broken_upload(*args: object, **kwargs: object) -> None:
                raise OSError("artifact store refused the upload")

            monkeypatch.setattr(tracker.client, "log_artifact", broken_upload)
            with pytest.raises(TrackingUnavailableError, match=mlflow_server.tracking_uri):
                tracker.log_strategy("mean_reversion", {"lookback": 20}, {"sharpe": 0.5}, results_frame=table)
            monkeypatch.undo()
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        doomed_sweep()

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    runs = runs_of(client, tracker.experiment_id)
    status = {r.info.run_name: r.info.status for r in runs}
    assert status == {"doomed": "FAILED", "ma_crossover": "FINISHED", "mean_reversion": "FAILED"}
    assert client.get_run(seen["ok"]).data.tags["mlflow.parentRunId"] == seen["parent"]
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_server_down_fails_fast_naming_the_uri() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as caught:
        MlflowTracker(uri, "anything", connect_timeout_s=2.0)
    assert time.monotonic() - started < 10
    assert uri in str(caught.value)
    assert "start the tracking server" in str(caught.value)


def test_local_sqlite_store_keeps_artifacts_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "track" / "mlflow.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    tracker = MlflowTracker(uri, "local")
    table = results_table("ma_crossover", 3)
    with tracker.start_sweep("local-sweep", {"backend": "sequential"}) as sweep:
        child = tracker.log_strategy("ma_crossover", {"fast": 5}, {"sharpe": 1.25}, results_frame=table)
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(sweep.run_id).info.status == "FINISHED"
    assert client.get_run(child).data.metrics == {"sharpe": 1.25}
    stored = list((db.parent / "mlartifacts").rglob("results.parquet"))
    assert len(stored) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(stored[0]), table)
    # a second tracker on the same store reuses the experiment
    assert MlflowTracker(uri, "local").experiment_id == tracker.experiment_id


def test_legacy_file_store_refused_with_fix_unless_opted_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingError, match=r"sqlite:////abs/path/mlflow\.db"):
        MlflowTracker(uri, "legacy")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracker = MlflowTracker(uri, "legacy")
    with tracker.start_sweep("file-sweep") as sweep:
        tracker.log_strategy("ma_crossover", {"fast": 5}, {"sharpe": 0.75}, results_frame=results_table("m", 4))
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(sweep.run_id).info.status == "FINISHED"
    assert list((tmp_path / "mlruns").rglob("results.parquet"))
