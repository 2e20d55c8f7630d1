"""Pure lake layout rules: names, versions, keys, frame checks, symbol encoding and partition planning."""

from __future__ import annotations

from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.storage_layout import (
    FileEntry,
    LayoutError,
    StorageMetadata,
    check_dataset_name,
    check_key,
    check_version,
    content_checksum,
    encode_symbol,
    normalise_frame,
    partition_path,
    plan_partitions,
    to_utc_timestamp,
)

pytestmark = pytest.mark.unit


def bars(symbols: list[str], periods: int, start: str = "2024-01-31T20:00Z", freq: str = "1h") -> pd.DataFrame:
    ts = pd.date_range(start, periods=periods, freq=freq)
    frames = [
        pd.DataFrame(
            {
                "timestamp": ts,
                "symbol": sym,
                "open": 100.0 + np.arange(periods),
                "high": 101.0 + np.arange(periods),
                "low": 99.0 + np.arange(periods),
                "close": 100.5 + np.arange(periods),
                "volume": np.full(periods, 10.0),
            }
        )
        for sym in symbols
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name", ["bars.synthetic-1m", "features.technical", "a", "x" * 128, "0_a.b-c"])
def test_valid_dataset_names_pass(name: str) -> None:
    assert check_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", "Bars", "-bars", ".hidden", "a/b", "x" * 129, "bars space", "bärs"])
def test_invalid_dataset_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(LayoutError, match="invalid dataset name") as info:
        check_dataset_name(name)
    assert "lowercase letters" in str(info.value)


@pytest.mark.parametrize("version", ["v1", "v1.2", "20260101T000000Z", "A_b-c.d"])
def test_valid_versions_pass(version: str) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize("version", ["", "-v1", "v/1", "x" * 65, "v 1", "../v1"])
def test_invalid_versions_are_refused(version: str) -> None:
    with pytest.raises(LayoutError, match="invalid version"):
        check_version(version)


def test_latest_is_reserved_for_writes_but_allowed_for_reads() -> None:
    with pytest.raises(LayoutError, match="reserved"):
        check_version("latest")
    assert check_version("latest", allow_latest=True) == "latest"


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/"])
def test_bad_object_keys_are_refused(key: str) -> None:
    with pytest.raises(LayoutError, match="invalid object key"):
        check_key(key)


@pytest.mark.parametrize("symbol", ["BTC/USDT", "a=b", "100%", "with space", "ÉTÉ", "..", "x/../y"])
def test_symbol_encoding_is_path_safe_and_exact(symbol: str) -> None:
    encoded = encode_symbol(symbol)
    assert "/" not in encoded
    assert "=" not in encoded
    assert " " not in encoded
    assert unquote(encoded) == symbol


def test_normalise_sorts_by_symbol_then_time_and_keeps_ns_utc() -> None:
    df = bars(["ZZZ", "AAA"], 5).sample(frac=1.0, random_state=3)
    df["timestamp"] = df["timestamp"].dt.as_unit("us")
    before = df.copy()
    out = normalise_frame(df, time_column="timestamp")
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is left alone
    assert list(out["symbol"].unique()) == ["AAA", "ZZZ"]
    for _, group in out.groupby("symbol"):
        assert group["timestamp"].is_monotonic_increasing
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert len(out) == len(df)


def test_naive_timestamps_are_refused_with_the_fix() -> None:
    df = bars(["A"], 3)
    df["timestamp"] = df["timestamp"].dt.tz_localize(None)
    with pytest.raises(LayoutError, match=r"timezone-naive.*tz_localize\('UTC'\)"):
        normalise_frame(df, time_column="timestamp")


def test_non_utc_timestamps_are_refused_with_the_fix() -> None:
    df = bars(["A"], 3)
    df["timestamp"] = df["timestamp"].dt.tz_convert("Europe/Paris")
    with pytest.raises(LayoutError, match=r"Europe/Paris.*tz_convert\('UTC'\)"):
        normalise_frame(df, time_column="timestamp")


def test_string_timestamps_are_refused_with_the_fix() -> None:
    df = bars(["A"], 3)
    df["timestamp"] = df["timestamp"].astype(str)
    with pytest.raises(LayoutError, match=r"pd.to_datetime"):
        normalise_frame(df, time_column="timestamp")


def test_missing_columns_are_named_with_an_index_hint() -> None:
    df = bars(["A"], 3).set_index("timestamp")
    with pytest.raises(LayoutError, match=r"missing required column\(s\) \['timestamp'\].*reset_index"):
        normalise_frame(df, time_column="timestamp")
    with pytest.raises(LayoutError, match=r"\['symbol'\]"):
        normalise_frame(bars(["A"], 3).drop(columns="symbol"), time_column="timestamp")


def test_empty_frame_is_refused() -> None:
    with pytest.raises(LayoutError, match="empty"):
        normalise_frame(bars(["A"], 3).iloc[:0], time_column="timestamp")


def test_missing_time_and_bad_symbols_are_refused_with_rows() -> None:
    df = bars(["A"], 4)
    df.loc[2, "timestamp"] = pd.NaT
    with pytest.raises(LayoutError, match=r"missing values \(first rows: \[2\]\)"):
        normalise_frame(df, time_column="timestamp")
    df = bars(["A"], 4)
    df["symbol"] = df["symbol"].astype(object)
    df.loc[1, "symbol"] = ""
    df.loc[3, "symbol"] = 7
    with pytest.raises(LayoutError, match=r"non-empty strings.*rows \[1, 3\]"):
        normalise_frame(df, time_column="timestamp")


def test_duplicate_and_non_string_column_names_are_refused() -> None:
    df = bars(["A"], 2)
    with pytest.raises(LayoutError, match="duplicate column names"):
        normalise_frame(pd.concat([df, df[["close"]]], axis=1), time_column="timestamp")
    df[3] = 1.0
    with pytest.raises(LayoutError, match="column names must be strings"):
        normalise_frame(df, time_column="timestamp")


def test_filter_bounds_must_be_timezone_aware() -> None:
    assert to_utc_timestamp("2024-01-01T01:00+01:00", what="start") == pd.Timestamp("2024-01-01T00:00Z")
    with pytest.raises(LayoutError, match="no timezone"):
        to_utc_timestamp("2024-01-01", what="start")
    with pytest.raises(LayoutError, match="not a timestamp"):
        to_utc_timestamp("yesterday-ish", what="end")


def test_partitions_follow_symbol_and_month_runs() -> None:
    # 20:00 on Jan 31 + 10 hours crosses into February: two months per symbol.
    df = normalise_frame(bars(["B", "A"], 10), time_column="timestamp")
    slices = plan_partitions(df, time_column="timestamp", time_partition="month", max_rows_per_file=1000)
    assert [(s.symbol, s.bucket, s.stop - s.start) for s in slices] == [
        ("A", "2024-01", 4),
        ("A", "2024-02", 6),
        ("B", "2024-01", 4),
        ("B", "2024-02", 6),
    ]
    assert partition_path(slices[0], time_partition="month", part=0) == "symbol=A/month=2024-01/part-00000.parquet"


def test_day_year_and_no_time_partitions_and_file_splitting() -> None:
    df = normalise_frame(bars(["A"], 10), time_column="timestamp")
    days = plan_partitions(df, time_column="timestamp", time_partition="day", max_rows_per_file=1000)
    assert [s.bucket for s in days] == ["2024-01-31", "2024-02-01"]
    years = plan_partitions(df, time_column="timestamp", time_partition="year", max_rows_per_file=1000)
    assert [s.bucket for s in years] == ["2024"]
    split = plan_partitions(df, time_column="timestamp", time_partition=None, max_rows_per_file=3)
    assert [(s.start, s.stop) for s in split] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert partition_path(split[0], time_partition=None, part=2) == "symbol=A/part-00002.parquet"


def test_checksum_ignores_the_attempt_dir_but_not_content() -> None:
    ts = pd.Timestamp("2024-01-01T00:00Z")

    def entry(attempt: str, sha: str) -> FileEntry:
        return FileEntry(f"{attempt}/symbol=A/part-00000.parquet", "A", 1, 10, sha, ts, ts)

    assert content_checksum([entry("attempt-1", "aa")], "attempt-1") == content_checksum(
        [entry("attempt-2", "aa")], "attempt-2"
    )
    assert content_checksum([entry("attempt-1", "aa")], "attempt-1") != content_checksum(
        [entry("attempt-1", "ab")], "attempt-1"
    )
    assert content_checksum([entry("attempt-1", "aa")], "attempt-1").startswith("sha256:")


def test_manifest_json_roundtrip_keeps_column_order() -> None:
    ts = pd.Timestamp("2024-01-01T00:00Z")
    entry = FileEntry("attempt-1/symbol=A/part-00000.parquet", "A", 1, 10, "aa", ts, ts)
    meta = StorageMetadata(
        name="bars.x",
        version="v1",
        location="memory://x/datasets/bars.x/v1",
        files=(entry.path,),
        row_count=1,
        size_bytes=10,
        checksum="sha256:00",
        schema={"timestamp": "timestamp[ns, tz=UTC]", "symbol": "large_string", "close": "double", "a": "double"},
        symbols=("A",),
        start=ts,
        end=ts,
        partitioning=("symbol", "month"),
        created_at=ts,
        extra={"k": "v"},
        file_entries=(entry,),
    )
    again = StorageMetadata.from_json_bytes(meta.to_json_bytes(), source="test")
    assert again == meta
    assert list(again.schema) == ["timestamp", "symbol", "close", "a"]
    with pytest.raises(LayoutError, match="unreadable"):
        StorageMetadata.from_json_bytes(b'{"format": "qframe-lake/1"}', source="broken")
