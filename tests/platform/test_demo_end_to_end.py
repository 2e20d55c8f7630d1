"""`qframe demo` as a researcher runs it: a real process, a real local Dask cluster, a local MLflow store.

A second run must reuse the immutable data versions and the sweep checkpoints and give the same results.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from qframe.research.data_lake.catalog import DataCatalog

pytestmark = pytest.mark.services

QFRAME = Path(sys.executable).with_name("qframe")


def _demo(workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QFRAME_", "MLFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return subprocess.run(
        [str(QFRAME), "demo", "--workdir", str(workdir), "--periods", "1500", "--splits", "2", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def test_demo_runs_the_whole_research_day_and_reruns_from_stored_state(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = _demo(workdir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "on dask" in first.stdout
    assert "ingested bars.demo-1h@v1" in first.stdout

    results = pd.read_parquet(workdir / "results" / "results.parquet")
    assert set(results["strategy"]) == {"ma_crossover", "adaptive_mean_reversion", "momentum_breakout"}
    assert set(results["dataset"]) == {"AAA", "BBB", "CCC"}
    assert set(results["sample"]) == {"in_sample", "out_of_sample"}
    for strategy in ("ma_crossover", "adaptive_mean_reversion", "momentum_breakout"):
        for symbol in ("AAA", "BBB", "CCC"):  # one tear sheet per symbol
            sheet = workdir / "results" / "tear_sheets" / f"{strategy}.{symbol}.html"
            assert f"{strategy} on {symbol} (bars.demo-1h@v1): walk-forward" in sheet.read_text(encoding="utf-8")

    catalog = DataCatalog(f"sqlite:///{workdir / 'catalog.db'}")
    try:
        lineage = catalog.lineage_sync("features.technical", "v1")
        assert [(ref.name, ref.version) for ref in lineage] == [("bars.demo-1h", "v1")]
        assert catalog.get_dataset_sync("bars.demo-1h", "v1").row_count == 3 * 1500
    finally:
        catalog.close()

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("qframe-demo")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    # one nested run per strategy and symbol
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 3 * 3

    second = _demo(workdir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "reusing bars.demo-1h@v1" in second.stdout
    assert "reusing features.technical@v1" in second.stdout
    again = pd.read_parquet(workdir / "results" / "results.parquet")
    pd.testing.assert_frame_equal(again, results, check_exact=True)
