"""A writer process killed with SIGKILL mid-write leaves no visible version (local disk and real MinIO).

The child process writes a large dataset (one file per symbol and day) and, after its Nth data file,
prints a line and sleeps; the test then SIGKILLs it, so the kill lands between data files and the
manifest, the window a real crash would hit. The child wraps the storage's put hook to know when;
the library has no test switch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.storage import DataLakeStorage, DatasetNotFound, LocalFileStorage, MinIOStorage

from tools.services import MinioService

pytestmark = pytest.mark.services

FILES_BEFORE_KILL = 25
CHILD_TIMEOUT_S = 180.0

CHILD = textwrap.dedent(
    """
    import json, os, time
    import pandas as pd
    from qframe.research.data_lake.storage import LocalFileStorage, MinIOStorage

    spec = json.loads(os.environ["LAKE_CRASH_SPEC"])  # env, not argv: keeps the MinIO key out of `ps`
    if spec["kind"] == "local":
        storage = LocalFileStorage(spec["root"], io_threads=1)
    else:
        storage = MinIOStorage(spec["endpoint"], spec["access_key"], spec["secret_key"], spec["bucket"],
                               secure=False, prefix="lake", io_threads=1)
    frame = pd.read_parquet(spec["frame"])
    real_write = storage._write
    written = 0

    def write_then_stall(path, data, *, exclusive):
        global written
        real_write(path, data, exclusive=exclusive)
        if path.endswith(".parquet"):
            written += 1
            if written == spec["files_before_kill"]:
                print("FILES-WRITTEN", written, flush=True)
                time.sleep(600)

    storage._write = write_then_stall
    storage.write_dataset(spec["name"], frame, version=spec["version"], overwrite=spec["overwrite"],
                          time_partition="day")
    print("COMMITTED", flush=True)
    """
)


def big_frame(seed: int) -> pd.DataFrame:
    # 12 symbols x 20 days of 5-minute bars, daily partitions: 240 files, plenty after the kill point.
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=20 * 288, freq="5min", tz="UTC")
    frames = []
    for i in range(12):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.002, len(ts))))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": f"SYM{i:02d}/USD",
                    "open": close,
                    "high": close * 1.001,
                    "low": close * 0.999,
                    "close": close,
                    "volume": rng.uniform(0, 5, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def kill_writer_mid_write(spec: dict[str, Any], workdir: Path) -> None:
    """Starts the child writer, waits for its Nth data file, SIGKILLs it and reaps it."""
    log_path = workdir / f"child-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            env={**os.environ, "LAKE_CRASH_SPEC": json.dumps(spec)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            assert child.stdout is not None
            deadline = time.monotonic() + CHILD_TIMEOUT_S
            line = b""
            while time.monotonic() < deadline:
                line = child.stdout.readline()
                if line or child.poll() is not None:
                    break
            assert line.startswith(b"FILES-WRITTEN"), (line, log_path.read_text(errors="replace")[-3000:])
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=30)
            if child.stdout is not None:
                child.stdout.close()


def crash_scenario(storage: DataLakeStorage, spec_for: Callable[..., dict[str, Any]], workdir: Path) -> None:
    first, second = big_frame(seed=1), big_frame(seed=2)
    frame_path = workdir / "frame.parquet"
    other_path = workdir / "other.parquet"
    first.to_parquet(frame_path)
    second.to_parquet(other_path)
    storage.write_dataset("bars.crash", first.iloc[:100], version="v0")
    before = storage.list_versions("bars.crash")

    # 1. A fresh version killed mid-write: nothing visible, leftovers present but unreferenced.
    kill_writer_mid_write(spec_for(frame=frame_path, version="v1", overwrite=False), workdir)
    assert storage.list_versions("bars.crash") == before
    assert storage.list_datasets() == ["bars.crash"]
    with pytest.raises(DatasetNotFound):
        storage.read_dataset("bars.crash", version="v1")
    leftovers = [k for k in storage.list_keys("datasets/bars.crash/v1/") if k.endswith(".parquet")]
    assert len(leftovers) >= FILES_BEFORE_KILL  # the kill really landed mid-write
    assert not storage.exists("datasets/bars.crash/v1/_manifest.json")

    # 2. A rewrite of that version succeeds, reads back equal, and cleans the crashed attempt.
    meta = storage.write_dataset("bars.crash", first, version="v1", time_partition="day")
    assert storage.list_versions("bars.crash") == [*before, "v1"]
    pd.testing.assert_frame_equal(storage.read_dataset("bars.crash", version="v1"), first, check_dtype=False)
    data_keys = [k for k in storage.list_keys("datasets/bars.crash/v1/") if k.endswith(".parquet")]
    assert sorted(data_keys) == sorted(f"datasets/bars.crash/v1/{f}" for f in meta.files)

    # 3. An overwrite killed mid-write leaves the committed version intact.
    kill_writer_mid_write(spec_for(frame=other_path, version="v1", overwrite=True), workdir)
    assert storage.manifest("bars.crash", "v1").checksum == meta.checksum
    pd.testing.assert_frame_equal(
        storage.read_dataset("bars.crash", version="v1", verify=True), first, check_dtype=False
    )


def test_killed_local_writer_leaves_no_visible_version(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    storage = LocalFileStorage(root)

    def spec_for(*, frame: Path, version: str, overwrite: bool) -> dict[str, Any]:
        return {
            "kind": "local",
            "root": str(root),
            "frame": str(frame),
            "name": "bars.crash",
            "version": version,
            "overwrite": overwrite,
            "files_before_kill": FILES_BEFORE_KILL,
        }

    crash_scenario(storage, spec_for, tmp_path)
    assert not list(root.rglob(".tmp-*"))  # the committed rewrite removed stray temp files too


def test_killed_minio_writer_leaves_no_visible_version(minio: MinioService, tmp_path: Path) -> None:
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **minio.boto3_kwargs()).create_bucket(Bucket=bucket)
    endpoint = minio.endpoint_url.removeprefix("http://")
    storage = MinIOStorage(endpoint, minio.access_key_id, minio.secret_access_key, bucket, secure=False, prefix="lake")

    def spec_for(*, frame: Path, version: str, overwrite: bool) -> dict[str, Any]:
        return {
            "kind": "minio",
            "endpoint": endpoint,
            "access_key": minio.access_key_id,
            "secret_key": minio.secret_access_key,
            "bucket": bucket,
            "frame": str(frame),
            "name": "bars.crash",
            "version": version,
            "overwrite": overwrite,
            "files_before_kill": FILES_BEFORE_KILL,
        }

    crash_scenario(storage, spec_for, tmp_path)
