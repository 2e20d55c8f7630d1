"""Reads verify by default: a flipped byte anywhere, a swapped or replaced file is refused, never returned.

Before reads verified by default (``verify=False`` was the default and no caller passed True), most of
these reads returned different prices with no error; here every one must raise
:class:`DatasetCorrupted` naming the dataset, the version and the file.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.storage import DataLakeStorage, DatasetCorrupted, LocalFileStorage, MinIOStorage

from tools.services import MinioService

NAME = "bars.verify"
VERSION = "v1"


def bars(symbols: list[str], periods: int, *, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=periods, freq="1h", tz="UTC")
    frames = []
    for sym in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, periods)))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": rng.uniform(1, 10, periods),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def offsets(size: int, count: int) -> list[int]:
    """``count`` offsets spread over the file, always including the magic bytes and the footer."""
    spread = np.linspace(0, size - 1, num=count, dtype=int).tolist()
    return sorted({0, 3, size // 2, size - 8, size - 5, size - 1, *spread})


def refusals(
    storage: DataLakeStorage,
    original: pd.DataFrame,
    files: list[str],
    load: Callable[[str], bytes],
    store: Callable[[str, bytes], None],
    *,
    flips_per_file: int,
) -> tuple[int, int, int, int]:
    """Flips one byte at a time (restoring it after).

    Returns (reads, refused, silently different, silently different with ``verify=False``): the last one
    is what every read returned before verification was the default.
    """
    reads = refused = silent_differences = unverified_differences = 0
    for path in files:
        clean = load(path)
        for offset in offsets(len(clean), flips_per_file):
            damaged = bytearray(clean)
            damaged[offset] ^= 0x01 if offset % 2 else 0xFF
            store(path, bytes(damaged))
            reads += 1
            try:
                got = storage.read_dataset(NAME, version=VERSION)
            except DatasetCorrupted as exc:
                refused += 1
                assert_names_the_file(str(exc), path)
            else:
                if not got.equals(original):
                    silent_differences += 1
            try:
                unchecked = storage.read_dataset(NAME, version=VERSION, verify=False)
            except Exception:  # a decoder error is a (noisy) refusal; only silent results count here
                unchecked = original
            if not unchecked.equals(original):
                unverified_differences += 1
        store(path, clean)
    return reads, refused, silent_differences, unverified_differences


def assert_names_the_file(message: str, path: str) -> None:
    assert f"dataset {NAME!r} version {VERSION!r}" in message, message
    assert path in message, message
    assert re.search(r"rewrite the version from its source", message), message


@pytest.mark.unit
def test_every_single_byte_flip_is_refused_on_local_disk(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    original = bars(["AAA", "BBB", "CCC"], 24 * 45, seed=1)  # 3 symbols x 2 months: 6 files
    meta = storage.write_dataset(NAME, original, version=VERSION)
    vdir = storage.root / "datasets" / NAME / VERSION
    pd.testing.assert_frame_equal(storage.read_dataset(NAME, version=VERSION), original, check_dtype=False)
    original = storage.read_dataset(NAME, version=VERSION)

    def store(path: str, data: bytes) -> None:
        (vdir / path).write_bytes(data)

    reads, refused, silent, unverified = refusals(
        storage, original, list(meta.files), lambda p: (vdir / p).read_bytes(), store, flips_per_file=50
    )
    print(f"local flips: {reads} reads, {refused} refused, {silent} silent; verify=False: {unverified} silent")
    assert reads >= 300
    assert (refused, silent) == (reads, 0)
    # The same flips read unchecked (the old default, now the explicit opt-out) go unnoticed in part:
    # proof that these flips are the kind the old default returned as different prices.
    assert unverified > 0
    pd.testing.assert_frame_equal(storage.read_dataset(NAME, version=VERSION), original)  # all restored


@pytest.mark.unit
def test_swapped_replaced_truncated_and_extended_files_are_refused(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    meta = storage.write_dataset(NAME, bars(["AAA", "BBB"], 24 * 45, seed=1), version=VERSION)
    other = storage.write_dataset(NAME, bars(["AAA", "BBB"], 24 * 45, seed=2), version="v2")
    vdir = storage.root / "datasets" / NAME / VERSION
    clean = {p: (vdir / p).read_bytes() for p in meta.files}
    cases = 0
    for first, second in itertools.permutations(meta.files, 2):  # two files of the version swapped
        (vdir / first).write_bytes(clean[second])
        (vdir / second).write_bytes(clean[first])
        with pytest.raises(DatasetCorrupted) as caught:
            storage.read_dataset(NAME, version=VERSION)
        assert f"dataset {NAME!r} version {VERSION!r}" in str(caught.value)
        (vdir / first).write_bytes(clean[first])
        (vdir / second).write_bytes(clean[second])
        cases += 1
    other_dir = storage.root / "datasets" / NAME / "v2"
    for mine, theirs in zip(meta.files, other.files, strict=True):
        replacements = {  # by what each one is
            "the same partition of another version": (other_dir / theirs).read_bytes(),
            "the last byte cut": clean[mine][:-1],
            "a byte appended": clean[mine] + b"\0",
        }
        for data in replacements.values():
            (vdir / mine).write_bytes(data)
            with pytest.raises(DatasetCorrupted, match=re.escape(mine)):
                storage.read_dataset(NAME, version=VERSION)
            with pytest.raises(DatasetCorrupted, match=re.escape(mine)):  # a filtered read that opens it too
                storage.read_dataset(NAME, version=VERSION, symbols=[mine.split("/")[1].removeprefix("symbol=")])
            cases += 1
        (vdir / mine).write_bytes(clean[mine])
    assert cases == len(meta.files) * (len(meta.files) - 1) + 3 * len(meta.files)
    assert len(storage.read_dataset(NAME, version=VERSION)) == 2 * 24 * 45


@pytest.mark.unit
def test_manifests_without_crc32_are_checked_by_sha256(tmp_path: Path) -> None:
    # Versions committed before CRC-32 was recorded still verify, by the sha256 they always had.
    storage = LocalFileStorage(tmp_path / "lake")
    meta = storage.write_dataset(NAME, bars(["AAA"], 48, seed=4), version=VERSION)
    manifest_path = storage.root / "datasets" / NAME / VERSION / "_manifest.json"
    raw = json.loads(manifest_path.read_bytes())
    for entry in raw["files"]:
        del entry["crc32"]
    manifest_path.write_text(json.dumps(raw))
    assert len(storage.read_dataset(NAME, version=VERSION)) == 48
    victim = storage.root / "datasets" / NAME / VERSION / meta.files[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetCorrupted, match=r"expected sha256 [0-9a-f]{64}, found sha256"):
        storage.read_dataset(NAME, version=VERSION)


@pytest.mark.services
def test_byte_flips_and_swaps_are_refused_on_minio(minio: MinioService) -> None:
    client = boto3.client("s3", **minio.boto3_kwargs())
    bucket = f"verify-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    storage = MinIOStorage(
        minio.endpoint_url.removeprefix("http://"),
        minio.access_key_id,
        minio.secret_access_key,
        bucket,
        secure=False,
        prefix="lake",
    )
    meta = storage.write_dataset(NAME, bars(["AAA", "BBB"], 24 * 45, seed=3), version=VERSION)
    original = storage.read_dataset(NAME, version=VERSION)

    def key(path: str) -> str:
        return f"lake/datasets/{NAME}/{VERSION}/{path}"

    def load(path: str) -> bytes:
        body: bytes = client.get_object(Bucket=bucket, Key=key(path))["Body"].read()
        return body

    def store(path: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key(path), Body=data)

    reads, refused, silent, unverified = refusals(storage, original, list(meta.files), load, store, flips_per_file=12)
    print(f"MinIO flips: {reads} reads, {refused} refused, {silent} silent; verify=False: {unverified} silent")
    assert reads >= 48
    assert (refused, silent) == (reads, 0)
    first, second = meta.files[0], meta.files[1]
    a, b = load(first), load(second)
    store(first, b)
    store(second, a)
    with pytest.raises(DatasetCorrupted, match=f"dataset {NAME!r} version {VERSION!r}"):
        storage.read_dataset(NAME, version=VERSION)
    store(first, a)
    store(second, b)
    pd.testing.assert_frame_equal(storage.read_dataset(NAME, version=VERSION), original)
