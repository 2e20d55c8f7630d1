"""Lake storage on MemoryStorage and LocalFileStorage: roundtrip, immutability, atomic commit, pruning, errors."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from qframe.research.data_lake.storage import (
    DataLakeStorage,
    DatasetCorrupted,
    DatasetNotFound,
    DatasetVersionExists,
    LayoutError,
    LocalFileStorage,
    MemoryStorage,
    ObjectExists,
    ObjectNotFound,
    storage_from_url,
)

pytestmark = pytest.mark.unit


def bars(
    symbols: list[str], periods: int, *, start: str = "2024-01-01", freq: str = "1h", seed: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=periods, freq=freq, tz="UTC")
    frames = []
    for sym in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, periods)))
        open_ = np.concatenate([[100.0], close[:-1]])
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.001,
                    "low": np.minimum(open_, close) * 0.999,
                    "close": close,
                    "volume": rng.uniform(1, 100, periods),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(params=["memory", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> DataLakeStorage:
    if request.param == "memory":
        return MemoryStorage()
    return LocalFileStorage(tmp_path / "lake")


def count_opens(monkeypatch: pytest.MonkeyPatch, storage: DataLakeStorage) -> list[str]:
    """Records every path the storage's filesystem opens or cats from now on."""
    opened: list[str] = []
    fs = storage.fs
    real_open, real_cat = fs.open, fs.cat_file

    def spy_open(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    def spy_cat(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_cat(path, *args, **kwargs)

    monkeypatch.setattr(fs, "open", spy_open)
    monkeypatch.setattr(fs, "cat_file", spy_cat)
    return opened


def test_roundtrip_is_exact_and_sorted(storage: DataLakeStorage) -> None:
    df = bars(["ETH/USDT", "BTC/USDT", "A=B%"], 24 * 70)  # 70 days: three months
    shuffled = df.sample(frac=1.0, random_state=1)
    meta = storage.write_dataset("bars.test", shuffled, version="v1")
    out = storage.read_dataset("bars.test", version="v1")
    expected = df.sort_values(["symbol", "timestamp"], kind="mergesort").reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["close"].dtype == np.float64
    assert meta.row_count == len(df)
    assert meta.symbols == ("A=B%", "BTC/USDT", "ETH/USDT")
    assert meta.start == df["timestamp"].min()
    assert meta.end == df["timestamp"].max()
    assert meta.partitioning == ("symbol", "month")
    assert len(meta.files) == 9  # 3 symbols x 3 months
    assert any("symbol=BTC%2FUSDT/month=2024-02/" in f for f in meta.files)
    assert meta.schema["timestamp"] == "timestamp[ns, tz=UTC]"
    assert meta.schema["close"] == "double"
    assert meta.location == storage.uri("datasets/bars.test/v1")
    assert meta.size_bytes == sum(e.size_bytes for e in meta.file_entries)


def test_checksum_is_deterministic_from_content(tmp_path: Path) -> None:
    df = bars(["A", "B"], 500)
    first = MemoryStorage().write_dataset("bars.c", df, version="v1")
    second = LocalFileStorage(tmp_path / "other").write_dataset("bars.c", df.iloc[::-1], version="v9")
    assert first.checksum == second.checksum
    changed = df.copy()
    changed.loc[10, "close"] += 1e-9
    third = MemoryStorage().write_dataset("bars.c", changed, version="v1")
    assert third.checksum != first.checksum


def test_filters_and_partition_pruning_open_only_matching_files(
    storage: DataLakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = bars(["AAA", "BBB", "CCC"], 24 * 90)  # Jan..Mar 2024, hourly
    meta = storage.write_dataset("bars.prune", df, version="v1")
    assert len(meta.files) == 9
    opened = count_opens(monkeypatch, storage)
    out = storage.read_dataset(
        "bars.prune", symbols=["BBB"], start="2024-02-10T00:00Z", end="2024-02-12T00:00Z", columns=["close"]
    )
    data_files = sorted({p for p in opened if p.endswith(".parquet")})  # a verified read may open + cat one file
    assert len(data_files) == 1
    assert "symbol=BBB/month=2024-02/" in data_files[0]
    assert list(out.columns) == ["timestamp", "symbol", "close"]
    assert set(out["symbol"]) == {"BBB"}
    assert out["timestamp"].min() == pd.Timestamp("2024-02-10T00:00Z")  # start inclusive
    assert out["timestamp"].max() == pd.Timestamp("2024-02-11T23:00Z")  # end exclusive
    assert len(out) == 48
    expected = df[(df.symbol == "BBB") & (df.timestamp >= "2024-02-10T00:00Z") & (df.timestamp < "2024-02-12T00:00Z")]
    np.testing.assert_array_equal(out["close"].to_numpy(), expected["close"].to_numpy())
    assert storage.dataset_files("bars.prune", symbols=["BBB"], start="2024-02-10T00:00Z", end="2024-02-12T00:00Z") == [
        storage.uri(f"datasets/bars.prune/v1/{p}") for p in meta.files if "symbol=BBB/month=2024-02/" in p
    ]


def test_range_spanning_months_opens_each_month_once(storage: DataLakeStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.write_dataset("bars.span", bars(["AAA", "BBB"], 24 * 90), version="v1")
    opened = count_opens(monkeypatch, storage)
    out = storage.read_dataset("bars.span", symbols="AAA", start="2024-01-31T12:00Z", end="2024-03-01T00:00Z")
    data_files = sorted({p for p in opened if p.endswith(".parquet")})  # cat_file may open the file it reads
    assert len(data_files) == 2
    assert "month=2024-01" in data_files[0]
    assert "month=2024-02" in data_files[1]
    assert len(out) == 12 + 29 * 24


class CountingFile:
    """A read-only file wrapper that counts the bytes pyarrow pulls through it."""

    def __init__(self, inner: Any, counter: list[int]) -> None:
        self._inner = inner
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read(size)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


def test_row_group_statistics_prune_inside_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    df = bars(["AAA"], 60 * 24 * 60, freq="1min")  # 86 400 rows in one year-partition file
    meta = storage.write_dataset("bars.rg", df, version="v1", time_partition="year")
    assert len(meta.files) == 1
    path = storage.root / "datasets/bars.rg/v1" / meta.files[0]
    assert pq.ParquetFile(path).metadata.num_row_groups >= 5
    counter = [0]
    real_open = storage.fs.open
    monkeypatch.setattr(storage.fs, "open", lambda p, *a, **k: CountingFile(real_open(p, *a, **k), counter))
    # Row-group skipping needs the unverified read: a verified one hashes (so reads) every byte of the file.
    out = storage.read_dataset("bars.rg", start="2024-01-20T00:00Z", end="2024-01-21T00:00Z", verify=False)
    assert len(out) == 1440
    assert out["timestamp"].min() == pd.Timestamp("2024-01-20T00:00Z")
    # Only the row groups overlapping that day (plus the footer) were read, not the whole file.
    assert 0 < counter[0] < path.stat().st_size / 3
    verified = storage.read_dataset("bars.rg", start="2024-01-20T00:00Z", end="2024-01-21T00:00Z")
    pd.testing.assert_frame_equal(verified, out)


def test_unknown_symbols_and_empty_ranges_give_typed_empty_frames(
    storage: DataLakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.write_dataset("bars.empty", bars(["AAA"], 48), version="v1")
    opened = count_opens(monkeypatch, storage)
    out = storage.read_dataset("bars.empty", symbols=["NOPE"])
    assert out.empty
    assert not [p for p in opened if p.endswith(".parquet")]
    assert list(out.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert storage.read_dataset("bars.empty", start="2030-01-01T00:00Z").empty


def test_versions_are_immutable_unless_overwrite(storage: DataLakeStorage) -> None:
    first = bars(["AAA"], 48, seed=1)
    storage.write_dataset("bars.imm", first, version="v1")
    with pytest.raises(DatasetVersionExists, match=r"'bars.imm' version 'v1' is already committed") as caught:
        storage.write_dataset("bars.imm", bars(["AAA"], 48, seed=2), version="v1")
    # It points at a new version, and warns what overwriting does instead of suggesting it.
    assert "write a new version" in str(caught.value)
    assert "pass overwrite=True" not in str(caught.value)
    assert "use it only to repair a version from its source" in str(caught.value)
    pd.testing.assert_frame_equal(storage.read_dataset("bars.imm"), first, check_dtype=False)


def test_overwrite_swaps_manifest_and_removes_old_attempt(storage: DataLakeStorage) -> None:
    old = storage.write_dataset("bars.ow", bars(["AAA", "BBB"], 48, seed=1), version="v1")
    replacement = bars(["CCC"], 30, seed=2)
    new = storage.write_dataset("bars.ow", replacement, version="v1", overwrite=True)
    old_attempt = old.files[0].split("/")[0]
    new_attempt = new.files[0].split("/")[0]
    assert old_attempt != new_attempt
    keys = storage.list_keys("datasets/bars.ow/v1/")
    assert not [k for k in keys if old_attempt in k]
    assert sorted(k for k in keys if k.endswith(".parquet")) == sorted(f"datasets/bars.ow/v1/{f}" for f in new.files)
    pd.testing.assert_frame_equal(storage.read_dataset("bars.ow"), replacement, check_dtype=False)
    assert storage.list_versions("bars.ow") == ["v1"]


def test_failed_write_leaves_nothing_visible_and_removes_its_files(
    storage: DataLakeStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.write_dataset("bars.fail", bars(["AAA"], 24), version="v1")
    real_write = storage._write
    calls = {"n": 0}

    def flaky(path: str, data: bytes, *, exclusive: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        real_write(path, data, exclusive=exclusive)

    monkeypatch.setattr(storage, "_write", flaky)
    with pytest.raises(OSError, match="disk full"):
        storage.write_dataset("bars.fail", bars(["AAA", "BBB", "CCC"], 24 * 40), version="v2")
    monkeypatch.undo()
    assert storage.list_versions("bars.fail") == ["v1"]
    assert storage.list_keys("datasets/bars.fail/v2") == []
    with pytest.raises(DatasetNotFound, match=r"no committed version 'v2'.*\['v1'\]"):
        storage.read_dataset("bars.fail", version="v2")


def test_crash_leftovers_are_invisible_then_cleaned_by_the_next_write(storage: DataLakeStorage) -> None:
    # What a killed writer leaves: data files of an attempt without a manifest (and a temp file on disk).
    leftover = "datasets/bars.crash/v1/attempt-20240101T000000-deadbeef0000/symbol=AAA/month=2024-01/part-00000.parquet"
    storage.put_bytes(leftover, b"half a parquet file")
    assert storage.list_versions("bars.crash") == []
    assert storage.list_datasets() == []
    with pytest.raises(DatasetNotFound):
        storage.read_dataset("bars.crash")
    df = bars(["AAA"], 24)
    storage.write_dataset("bars.crash", df, version="v1")
    assert not [k for k in storage.list_keys("datasets/bars.crash/") if "deadbeef" in k]
    pd.testing.assert_frame_equal(storage.read_dataset("bars.crash"), df, check_dtype=False)


def test_concurrent_writers_of_one_version_have_exactly_one_winner(storage: DataLakeStorage) -> None:
    frames = [bars(["AAA", "BBB"], 24 * 40, seed=i) for i in range(4)]
    barrier = threading.Barrier(len(frames))
    outcomes: dict[int, str] = {}

    def writer(index: int) -> None:
        barrier.wait()
        try:
            storage.write_dataset("bars.race", frames[index], version="v1")
            outcomes[index] = "won"
        except DatasetVersionExists:
            outcomes[index] = "exists"
        except Exception as exc:
            outcomes[index] = f"{type(exc).__name__}: {exc}"
            raise

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert sorted(outcomes.values()) == ["exists"] * (len(frames) - 1) + ["won"], outcomes
    pd.testing.assert_frame_equal(storage.read_dataset("bars.race"), frames[winners[0]], check_dtype=False)
    committed = storage.manifest("bars.race", "v1")
    attempts = {k.split("/")[3] for k in storage.list_keys("datasets/bars.race/v1/") if k.endswith(".parquet")}
    assert attempts == {committed.files[0].split("/")[0]}


def test_latest_versions_and_datasets(storage: DataLakeStorage) -> None:
    assert storage.list_datasets() == []
    with pytest.raises(DatasetNotFound, match="no committed version"):
        storage.manifest("bars.v")
    for version, seed in (("v2", 1), ("v10", 2), ("v1", 3)):
        storage.write_dataset("bars.v", bars(["AAA"], 5, seed=seed), version=version)
    storage.write_dataset("features.f", bars(["AAA"], 5), version="x")
    assert storage.list_versions("bars.v") == ["v2", "v10", "v1"]  # commit order, not lexical
    assert storage.manifest("bars.v").version == "v1"
    pd.testing.assert_frame_equal(storage.read_dataset("bars.v"), bars(["AAA"], 5, seed=3), check_dtype=False)
    assert storage.list_datasets() == ["bars.v", "features.f"]
    storage.delete_version("bars.v", "v1")
    assert storage.list_versions("bars.v") == ["v2", "v10"]
    assert storage.manifest("bars.v").version == "v10"
    assert storage.list_keys("datasets/bars.v/v1/") == []
    with pytest.raises(DatasetNotFound):
        storage.delete_version("bars.v", "v1")


def test_verify_detects_a_tampered_file(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    meta = storage.write_dataset("bars.ver", bars(["AAA"], 48), version="v1")
    assert len(storage.read_dataset("bars.ver", verify=True)) == 48
    victim = storage.root / "datasets/bars.ver/v1" / meta.files[0]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetCorrupted, match="CRC-32"):
        storage.read_dataset("bars.ver", verify=True)
    with pytest.raises(DatasetCorrupted, match="sha256"):
        storage.read_dataset("bars.ver", verify="sha256")


def test_manifest_is_the_last_file_written(storage: DataLakeStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    real_write = storage._write

    def record(path: str, data: bytes, *, exclusive: bool) -> None:
        written.append(path)
        real_write(path, data, exclusive=exclusive)

    monkeypatch.setattr(storage, "_write", record)
    meta = storage.write_dataset("bars.order", bars(["AAA", "BBB"], 24 * 40), version="v1", extra={"offset": "42"})
    assert written[0].endswith("/_writer.json")  # the attempt's lease comes before any data file
    assert written[-1].endswith("datasets/bars.order/v1/_manifest.json")
    assert len(written) == len(meta.files) + 2
    manifest = json.loads(storage.get_bytes("datasets/bars.order/v1/_manifest.json"))
    assert manifest["extra"] == {"offset": "42"}
    assert [f["path"] for f in manifest["files"]] == list(meta.files)
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert all(isinstance(f["crc32"], int) for f in manifest["files"])
    assert storage.manifest("bars.order", "v1").extra == {"offset": "42"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.assign(timestamp=df["timestamp"].dt.tz_localize(None)), "timezone-naive"),
        (lambda df: df.assign(timestamp=df["timestamp"].dt.tz_convert("America/New_York")), "America/New_York"),
        (lambda df: df.drop(columns=["symbol"]), "missing required column"),
        (lambda df: df.iloc[:0], "empty"),
    ],
)
def test_bad_frames_are_refused_before_anything_is_written(
    storage: DataLakeStorage, mutate: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    with pytest.raises(LayoutError, match=message):
        storage.write_dataset("bars.bad", mutate(bars(["AAA"], 10)), version="v1")
    assert storage.list_keys("") == []


def test_bad_names_versions_and_arguments_are_refused_before_writing(storage: DataLakeStorage) -> None:
    df = bars(["AAA"], 10)
    with pytest.raises(LayoutError, match="invalid dataset name"):
        storage.write_dataset("Bars", df, version="v1")
    with pytest.raises(LayoutError, match="reserved"):
        storage.write_dataset("bars.x", df, version="latest")
    with pytest.raises(LayoutError, match="time_partition"):
        storage.write_dataset("bars.x", df, version="v1", time_partition="week")  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="extra must map str to str"):
        storage.write_dataset("bars.x", df, version="v1", extra={"n": 1})  # type: ignore[dict-item]
    assert storage.list_keys("") == []
    storage.write_dataset("bars.x", df, version="v1")
    with pytest.raises(LayoutError, match=r"unknown column\(s\) \['nope'\]"):
        storage.read_dataset("bars.x", columns=["nope"])
    with pytest.raises(LayoutError, match="not before end"):
        storage.read_dataset("bars.x", start="2024-01-02T00:00Z", end="2024-01-01T00:00Z")
    with pytest.raises(LayoutError, match="no timezone"):
        storage.read_dataset("bars.x", start="2024-01-01")


def test_object_primitives(storage: DataLakeStorage) -> None:
    storage.put_bytes("checkpoints/run-1/a.json", b"{}")
    storage.put_bytes("checkpoints/run-1/b.json", b"[]")
    storage.put_bytes("checkpoints/run-2/a.json", b"1")
    assert storage.get_bytes("checkpoints/run-1/a.json") == b"{}"
    assert storage.exists("checkpoints/run-1/a.json")
    assert not storage.exists("checkpoints/run-1/zzz")
    assert storage.list_keys("checkpoints/run-1/") == ["checkpoints/run-1/a.json", "checkpoints/run-1/b.json"]
    assert storage.list_keys("checkpoints/run-") == [
        "checkpoints/run-1/a.json",
        "checkpoints/run-1/b.json",
        "checkpoints/run-2/a.json",
    ]
    assert storage.list_keys("nothing/here/") == []
    storage.put_bytes("checkpoints/run-1/a.json", b"new")
    assert storage.get_bytes("checkpoints/run-1/a.json") == b"new"
    with pytest.raises(ObjectExists, match="overwrite=True"):
        storage.put_bytes("checkpoints/run-1/a.json", b"x", overwrite=False)
    assert storage.get_bytes("checkpoints/run-1/a.json") == b"new"
    with pytest.raises(ObjectNotFound, match="no object 'missing/key'") as info:
        storage.get_bytes("missing/key")
    assert isinstance(info.value, KeyError)
    storage.delete_prefix("checkpoints/run-1/")
    assert storage.list_keys("checkpoints/") == ["checkpoints/run-2/a.json"]
    with pytest.raises(LayoutError, match="whole lake"):
        storage.delete_prefix("")
    with pytest.raises(LayoutError, match="invalid object key"):
        storage.put_bytes("../escape", b"x")


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    storage.put_bytes("a/b.bin", b"1" * 1000)
    storage.put_bytes("a/b.bin", b"2" * 10)
    assert sorted(p.name for p in (tmp_path / "lake/a").iterdir()) == ["b.bin"]
    assert (tmp_path / "lake/a/b.bin").read_bytes() == b"2" * 10


def test_memory_storages_are_isolated_and_picklable() -> None:
    one, two = MemoryStorage(), MemoryStorage()
    one.put_bytes("k", b"1")
    assert not two.exists("k")
    assert one.url != two.url
    clone = pickle.loads(pickle.dumps(one))  # noqa: S301 - our own bytes, as Dask ships a storage
    assert clone.get_bytes("k") == b"1"


def test_storage_from_url(tmp_path: Path) -> None:
    local = storage_from_url((tmp_path / "lake").as_uri())
    assert isinstance(local, LocalFileStorage)
    assert local.root == (tmp_path / "lake").resolve()
    assert isinstance(storage_from_url(str(tmp_path / "plain")), LocalFileStorage)
    assert isinstance(storage_from_url("memory://"), MemoryStorage)
    with pytest.raises(LayoutError, match="unsupported lake URL"):
        storage_from_url("gcs://bucket/x")
    with pytest.raises(LayoutError, match="names host"):
        storage_from_url("file://server/share")
