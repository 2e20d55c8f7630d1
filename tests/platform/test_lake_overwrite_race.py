"""Concurrent ``overwrite=True`` writers of one version never lose it (real processes; local disk and MinIO).

Each round commits a version, then starts N writer processes that each overwrite it with their own
frame. They import everything, report READY, and wait for one go-file so their writes overlap; each
writes one file per symbol and day, so the writes take long enough to interleave commits and clean-ups.
Afterwards the version must read back (verified) equal to the frame of the writer whose commit is the
manifest now, every writer must have reported success, and only that writer's attempt is left.

Before the conditional manifest swap this failed every round: a writer's clean-up removed the attempt
directory another writer was still writing, that writer then committed a manifest pointing at it, and
the read failed with files missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.storage import DataLakeStorage, LocalFileStorage, MinIOStorage
from qframe.research.data_lake.storage.writer_lease import WriterState, lease_bytes, writer_state

from tools.services import MinioService

WRITERS = 4
ROUNDS = 3
START_TIMEOUT_S = 120.0
WRITE_TIMEOUT_S = 300.0
NAME = "bars.race"

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import pandas as pd
    from qframe.research.data_lake.storage import LocalFileStorage, MinIOStorage

    spec = json.loads(os.environ["LAKE_RACE_SPEC"])  # env, not argv: keeps the MinIO key out of `ps`
    if spec["kind"] == "local":
        storage = LocalFileStorage(spec["root"], io_threads=2)
    else:
        storage = MinIOStorage(spec["endpoint"], spec["access_key"], spec["secret_key"], spec["bucket"],
                               secure=False, prefix="lake", io_threads=4)
    frame = pd.read_parquet(spec["frame"])
    print("READY", flush=True)
    while not os.path.exists(spec["go"]):
        time.sleep(0.005)
    try:
        meta = storage.write_dataset(spec["name"], frame, version=spec["version"], overwrite=True,
                                     time_partition="day")
    except Exception as exc:
        print("FAILED", json.dumps(f"{type(exc).__name__}: {exc}"), flush=True)
        sys.exit(3)
    print("COMMITTED", meta.checksum, flush=True)
    """
)


def frame_for(seed: int) -> pd.DataFrame:
    # 6 symbols x 15 days of 15-minute bars, daily partitions: 90 files per writer.
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-05-01", periods=15 * 96, freq="15min", tz="UTC")
    frames = []
    for i in range(6):
        close = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.003, len(ts))))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": f"R{i}/USD",
                    "open": close,
                    "high": close * 1.002,
                    "low": close * 0.998,
                    "close": close,
                    "volume": rng.uniform(0, 9, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def race_round(storage: DataLakeStorage, base_spec: dict[str, Any], workdir: Path, round_no: int) -> None:
    version = f"r{round_no}"
    storage.write_dataset(NAME, frame_for(1000 + round_no), version=version, time_partition="day")
    frames = {i: frame_for(round_no * 100 + i) for i in range(WRITERS)}
    go = workdir / f"go-{round_no}"
    children: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for index, frame in frames.items():
            frame_path = workdir / f"frame-{round_no}-{index}.parquet"
            frame.to_parquet(frame_path)
            spec = {**base_spec, "frame": str(frame_path), "version": version, "go": str(go), "name": NAME}
            log_path = workdir / f"child-{round_no}-{index}.log"
            with log_path.open("wb") as stderr:
                child = subprocess.Popen(
                    [sys.executable, "-c", CHILD],
                    env={**os.environ, "LAKE_RACE_SPEC": json.dumps(spec)},
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                )
            children.append((index, child, log_path))
        deadline = time.monotonic() + START_TIMEOUT_S
        for index, child, log_path in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith(b"READY"), (index, line, log_path.read_text(errors="replace")[-3000:])
            assert time.monotonic() < deadline
        go.touch()
        outcomes: dict[int, str] = {}
        for index, child, log_path in children:
            out, _ = child.communicate(timeout=WRITE_TIMEOUT_S)
            # The library logs to stdout too: the outcome is the child's own last marker line.
            marked = [ln for ln in out.decode().splitlines() if ln.startswith(("COMMITTED", "FAILED"))]
            outcomes[index] = marked[-1] if marked else out.decode()[-2000:]
            assert child.returncode == 0, (index, outcomes[index], log_path.read_text(errors="replace")[-3000:])
    finally:
        for _, child, _ in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)

    # Every writer reported success, so every one of them must have committed a readable version once.
    checksums = {index: text.split()[-1] for index, text in outcomes.items()}
    assert all(text.startswith("COMMITTED") for text in outcomes.values()), outcomes
    committed = storage.manifest(NAME, version)
    winners = [index for index, checksum in checksums.items() if checksum == committed.checksum]
    assert len(winners) == 1, (committed.checksum, checksums)
    got = storage.read_dataset(NAME, version=version)  # verified: every file present and unchanged
    pd.testing.assert_frame_equal(got, frames[winners[0]], check_dtype=False)
    attempts = {key.split("/")[3] for key in storage.list_keys(f"datasets/{NAME}/{version}/attempt-")}
    assert attempts == {committed.files[0].split("/")[0]}, "superseded attempts must be removed, and only those"


@pytest.mark.unit
def test_writer_lease_tells_dead_writers_from_live_and_foreign_ones() -> None:
    assert writer_state(lease_bytes()) is WriterState.ALIVE
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from qframe.research.data_lake.storage.writer_lease import lease_bytes as b; "
            "import sys; sys.stdout.buffer.write(b())",
        ],
        capture_output=True,
        check=True,
    )
    assert writer_state(child.stdout) is WriterState.DEAD  # that process has exited
    mine = json.loads(lease_bytes())
    assert writer_state(json.dumps({**mine, "host": "elsewhere"}).encode()) is WriterState.UNKNOWN
    assert writer_state(json.dumps({**mine, "start_ticks": mine["start_ticks"] + 1}).encode()) is WriterState.DEAD
    assert writer_state(b"not json") is WriterState.UNKNOWN


@pytest.mark.unit
def test_concurrent_overwrites_on_local_disk_keep_one_complete_version(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    storage = LocalFileStorage(root)
    for round_no in range(ROUNDS):
        race_round(storage, {"kind": "local", "root": str(root)}, tmp_path, round_no)
    assert not list(root.rglob(".tmp-*"))


@pytest.mark.services
def test_concurrent_overwrites_on_minio_keep_one_complete_version(minio: MinioService, tmp_path: Path) -> None:
    bucket = f"race-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **minio.boto3_kwargs()).create_bucket(Bucket=bucket)
    endpoint = minio.endpoint_url.removeprefix("http://")
    storage = MinIOStorage(endpoint, minio.access_key_id, minio.secret_access_key, bucket, secure=False, prefix="lake")
    spec = {
        "kind": "minio",
        "endpoint": endpoint,
        "access_key": minio.access_key_id,
        "secret_key": minio.secret_access_key,
        "bucket": bucket,
    }
    for round_no in range(ROUNDS):
        race_round(storage, spec, tmp_path, round_no)
