"""`qframe data ...` end to end on a local lake and SQLite catalog: results, plain errors, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import structlog
from qframe.research.cli import app
from qframe.research.data_lake.catalog import DataCatalog
from qframe.research.data_lake.storage import LocalFileStorage
from qframe.research.data_lake.synthetic import generate_market_data
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    runner = CliRunner()

    def invoke(*args: str, workdir: bool = True) -> tuple[int, str]:
        where = ["--workdir", str(tmp_path / "w")] if workdir else []
        result = runner.invoke(app, ["-q", *args, *where], catch_exceptions=False)
        return result.exit_code, result.output

    yield invoke
    structlog.reset_defaults()  # the CLI configures logging for its process; don't leak it into other tests


def test_generate_list_show_features_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("data", "generate", "--symbols", "AAA,BBB", "--periods", "300", "--version", "v1")
    assert code == 0, out
    assert "bars.synthetic-1h@v1" in out
    assert "600 bars" in out

    code, out = run("data", "features", "bars.synthetic-1h@v1", "--group", "technical", "--version", "v1")
    assert code == 0, out

    catalog = DataCatalog(f"sqlite:///{tmp_path / 'w' / 'catalog.db'}")
    try:
        features = catalog.get_dataset_sync("features.technical", "v1")
        assert [(ref.name, ref.version) for ref in catalog.lineage_sync("features.technical", "v1")] == [
            ("bars.synthetic-1h", "v1")
        ]
    finally:
        catalog.close()
    assert features.row_count == 600
    stored = LocalFileStorage(tmp_path / "w" / "lake").read_dataset("bars.synthetic-1h", version="v1")
    expected = generate_market_data(["AAA", "BBB"], periods=300, freq="1h", seed=0)
    pd.testing.assert_frame_equal(
        stored[expected.columns.tolist()].reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )

    code, out = run("data", "show", "features.technical")
    assert code == 0, out
    assert "derived from bars.synthetic-1h@v1" in out


def test_second_write_of_a_version_is_refused_in_plain_words(run) -> None:  # type: ignore[no-untyped-def]
    assert run("data", "generate", "--periods", "50", "--version", "v1")[0] == 0
    code, out = run("data", "generate", "--periods", "50", "--version", "v1", "--seed", "7")
    assert code == 2
    assert "already exists" in out
    assert "Traceback" not in out


def test_rerunning_the_same_write_is_an_idempotent_retry(run) -> None:  # type: ignore[no-untyped-def]
    # The same bars under the same version: what a retry after a lost answer does; it must not fail.
    assert run("data", "generate", "--periods", "50", "--version", "v1")[0] == 0
    code, out = run("data", "generate", "--periods", "50", "--version", "v1")
    assert code == 0, out
    assert "bars.synthetic-1h@v1" in out


def test_ingest_refuses_a_bad_file_and_writes_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bars = generate_market_data(["AAA"], periods=20, freq="1h", seed=1)
    bars.loc[5, "low"] = bars.loc[5, "high"] + 1.0  # low above high
    path = tmp_path / "bad.csv"
    bars.to_csv(path, index=False)

    code, out = run("data", "validate", str(path), workdir=False)
    assert code == 1
    assert "rejected" in out
    assert "row 5" in out

    code, out = run("data", "ingest", str(path), "--name", "bars.bad", "--version", "v1")
    assert code == 2
    assert "quarantine" in out
    lake = tmp_path / "w" / "lake"
    assert not lake.exists() or LocalFileStorage(lake).list_datasets() == []


def test_unknown_dataset_is_named(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run("data", "show", "bars.nothing")
    assert code == 2
    assert "bars.nothing" in out


def test_status_prints_the_session_as_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("status")
    assert code == 0, out
    status = json.loads(out)
    assert status["data_lake_url"] == (tmp_path / "w" / "lake").resolve().as_uri()
    assert "ma_crossover" in status["strategies"]
