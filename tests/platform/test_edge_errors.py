"""Edge inputs that ended in raw tracebacks (issue 14.4): long symbols, `qframe status` with the catalog down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from qframe.research.data_lake.storage import LayoutError, LocalFileStorage, MemoryStorage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.tracking.base import TrackingError
from qframe.research.tracking.mlflow_tracking import MlflowTracker

from tools.services._net import free_port

pytestmark = pytest.mark.unit

QFRAME = Path(sys.executable).with_name("qframe")


@pytest.mark.parametrize("symbol", ["X" * 250, "é" * 100, "BTC/" * 40], ids=["ascii-250", "utf8-100", "slashes"])
def test_a_symbol_too_long_for_a_path_is_a_clear_error_and_nothing_is_written(tmp_path: Path, symbol: str) -> None:
    frame = generate_market_data(["A"], periods=5, freq="1h", seed=0)
    frame["symbol"] = symbol
    storage = LocalFileStorage(tmp_path / "lake")
    with pytest.raises(LayoutError, match=r"too long for the lake.*at most 128 characters.*short codes"):
        storage.write_dataset("bars.long", frame, version="v1")
    assert storage.list_keys("datasets/") == []


def test_the_longest_allowed_symbol_round_trips(tmp_path: Path) -> None:
    frame = generate_market_data(["A"], periods=5, freq="1h", seed=0)
    frame["symbol"] = "S" * 128
    for storage in (LocalFileStorage(tmp_path / "lake"), MemoryStorage()):
        storage.write_dataset("bars.long", frame, version="v1")
        assert set(storage.read_dataset("bars.long")["symbol"]) == {"S" * 128}


def test_status_with_the_catalog_down_is_one_line_with_the_fix(tmp_path: Path) -> None:
    password = "StatusPw-5c1e"
    url = f"postgresql+psycopg://qframe:{password}@127.0.0.1:{free_port()}/catalog"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QFRAME_", "MLFLOW_"))}
    result = subprocess.run(
        [str(QFRAME), "status", "--catalog", url, "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "is unreachable" in lines[0]
    assert "QFRAME_CATALOG_URL" in lines[0]
    assert password not in output


def test_mlflow_on_a_database_store_needs_an_artifact_location_instead_of_cwd_mlruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"postgresql://u:TrackPw-77aa@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(TrackingError, match=r"database store.*\./mlruns.*artifact_location") as raised:
        MlflowTracker(uri, "backtests")
    assert "TrackPw-77aa" not in str(raised.value)
    assert not (tmp_path / "mlruns").exists()
