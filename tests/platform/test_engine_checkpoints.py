"""Sweep checkpoints: deterministic sweep ids, exact frame round trip, listing only finished tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qframe.research.backtesting.checkpoints import (
    CheckpointError,
    SweepCheckpoints,
    compute_sweep_id,
    data_fingerprint,
)
from qframe.research.backtesting.types import MarketData
from qframe.research.data_lake.storage import LocalFileStorage, MemoryStorage

pytestmark = pytest.mark.unit


def _data(name: str = "AAA", close_shift: float = 0.0) -> MarketData:
    rng = np.random.default_rng(7)
    close = 100 + rng.standard_normal(50).cumsum() + close_shift
    return MarketData(
        name=name,
        timestamps=(np.datetime64("2024-01-01T00", "h") + np.arange(50)).astype("datetime64[ns]"),
        open=close.copy(),
        high=close + 1,
        low=close - 1,
        close=close,
        volume=np.full(50, 1000.0),
    )


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "task_id": ["t1", "t1"],
            "strategy": ["ma_crossover", "ma_crossover"],
            "param_fast": [5, 10],
            "sharpe": [1.0 / 3.0, -np.pi],
            "max_drawdown": [-0.125, float("nan")],
            "n_trades": np.array([3, 7], dtype=np.int64),
        }
    )


def test_sweep_id_is_deterministic_and_covers_data_content() -> None:
    fingerprints = {"AAA": data_fingerprint(_data())}
    first = compute_sweep_id(["b", "a", "c"], fingerprints)
    assert first == compute_sweep_id(["c", "a", "b"], dict(fingerprints))
    assert first.startswith("sweep-")
    # Same task ids over changed bars must not reuse checkpoints computed on the old bars.
    changed = {"AAA": data_fingerprint(_data(close_shift=1e-9))}
    assert compute_sweep_id(["a", "b", "c"], changed) != first
    assert compute_sweep_id(["a", "b"], fingerprints) != first


def test_frames_round_trip_exactly_and_listing_finds_only_this_sweep() -> None:
    storage = MemoryStorage()
    checkpoints = SweepCheckpoints(storage, "sweep-abc")
    other = SweepCheckpoints(storage, "sweep-abd")
    frame = _frame()
    checkpoints.save("t1", frame)
    checkpoints.save("t2", frame.iloc[:1])
    other.save("t9", frame)
    storage.put_bytes("checkpoints/sweep-abc/notes.txt", b"not a checkpoint")

    assert checkpoints.completed() == {"t1", "t2"}
    assert other.completed() == {"t9"}
    assert storage.exists("checkpoints/sweep-abc/t1.parquet")
    pd.testing.assert_frame_equal(checkpoints.load("t1"), frame, check_exact=True)


def test_checkpoints_live_as_parquet_files_in_a_local_lake(tmp_path: Path) -> None:
    checkpoints = SweepCheckpoints(LocalFileStorage(tmp_path), "sweep-1", prefix="runs/ckpt")
    checkpoints.save("task-a", _frame())
    assert (tmp_path / "runs" / "ckpt" / "sweep-1" / "task-a.parquet").is_file()
    reopened = SweepCheckpoints(LocalFileStorage(tmp_path), "sweep-1", prefix="runs/ckpt")
    assert reopened.completed() == {"task-a"}


def test_bad_ids_and_unreadable_checkpoints_are_named() -> None:
    with pytest.raises(ValueError, match=r"sweep id '\.\./x' cannot be used"):
        SweepCheckpoints(MemoryStorage(), "../x")
    storage = MemoryStorage()
    checkpoints = SweepCheckpoints(storage, "sweep-x")
    with pytest.raises(ValueError, match="task id 'a/b'"):
        checkpoints.key("a/b")
    storage.put_bytes("checkpoints/sweep-x/broken.parquet", b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/sweep-x/broken.parquet.*Delete it"):
        checkpoints.load("broken")
