"""DataIngestionPipeline on in-memory/local storage and a SQLite catalog: validate, write, register, quarantine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.catalog import DataCatalog, DataQuality, DatasetMetadata, DatasetType
from qframe.research.data_lake.ingestion import (
    DataIngestionPipeline,
    IngestionError,
    bars_checksum,
    normalise_bars,
    quarantine_name,
    read_quarantine,
    timeframe_to_freq,
)
from qframe.research.data_lake.kafka_stream import (
    compact_ingested,
    decode_bars,
    encode_bars,
    parse_version,
    read_ingested,
    version_for,
)
from qframe.research.data_lake.storage import DatasetVersionExists, LocalFileStorage, MemoryStorage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import MarketDataValidationError

pytestmark = pytest.mark.unit


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[DataCatalog]:
    with DataCatalog(f"sqlite:///{tmp_path / 'catalog.db'}") as cat:
        yield cat


@pytest.fixture
def bars() -> pd.DataFrame:
    return generate_market_data(["AAA", "BBB"], periods=120, freq="1h", seed=1)


def _broken(bars: pd.DataFrame) -> pd.DataFrame:
    broken = bars.copy()
    broken.loc[4, "low"] = -1.0
    broken.loc[130, "volume"] = np.nan
    return broken


def test_frame_is_validated_written_and_registered(bars: pd.DataFrame, catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    entry = DataIngestionPipeline(storage, catalog).ingest_frame_sync(
        bars, name="bars.test-1h", version="v1", tags={"desk": "research"}, description="two symbols"
    )
    assert isinstance(entry, DatasetMetadata)
    manifest = storage.manifest("bars.test-1h", "v1")
    assert entry.quality_level == DataQuality.VALIDATED
    assert entry.dataset_type == DatasetType.RAW_MARKET_DATA
    assert entry.checksum == manifest.checksum
    assert entry.row_count == len(bars) == manifest.row_count
    assert entry.symbols == ("AAA", "BBB")
    assert entry.start == bars["timestamp"].min()
    assert entry.end == bars["timestamp"].max()
    assert entry.tags["desk"] == "research"
    assert entry.tags["rows_quarantined"] == "0"
    stored = storage.read_dataset("bars.test-1h", version="v1")
    assert bars_checksum(stored) == bars_checksum(bars)


def test_without_a_catalog_the_manifest_is_returned(bars: pd.DataFrame) -> None:
    storage = MemoryStorage()
    manifest = DataIngestionPipeline(storage).ingest_frame_sync(bars, name="bars.nocat", version="v1")
    assert manifest == storage.manifest("bars.nocat", "v1")


def test_a_bad_batch_is_refused_and_nothing_lands(bars: pd.DataFrame, catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    storage.put_bytes("notes/readme.txt", b"unrelated object")
    before = storage.list_keys("")
    with pytest.raises(MarketDataValidationError) as caught:
        DataIngestionPipeline(storage, catalog).ingest_frame_sync(_broken(bars), name="bars.bad", version="v1")
    message = str(caught.value)
    assert "low_not_positive (1 rows)" in message
    assert "volume_invalid (1 rows)" in message
    assert "row 4: symbol='AAA'" in message
    assert "quarantine=True" in message
    assert storage.list_keys("") == before
    assert storage.list_datasets() == []
    assert catalog.count_sync() == 0


def test_quarantine_writes_valid_rows_and_sets_bad_ones_aside(bars: pd.DataFrame, catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    result = DataIngestionPipeline(storage, catalog, quarantine=True).ingest_frame_detailed_sync(
        _broken(bars), name="bars.q", version="v1"
    )
    assert result.manifest is not None
    assert result.manifest.row_count == len(bars) - 2
    assert result.quarantine is not None
    assert result.quarantine.rule_counts == {"low_not_positive": 1, "volume_invalid": 1}
    aside = read_quarantine(storage, "bars.q", "v1")
    assert aside["_row"].tolist() == [4, 130]
    assert aside["_reasons"].tolist() == ["low_not_positive", "volume_invalid"]
    assert aside.loc[0, "low"] == -1.0
    good = bars.drop(index=[4, 130])
    assert bars_checksum(storage.read_dataset("bars.q", version="v1")) == bars_checksum(good)
    entry = catalog.get_dataset_sync(quarantine_name("bars.q"), "v1")
    assert entry.quality_level == DataQuality.QUARANTINED
    assert entry.row_count == 2
    assert entry.location == storage.uri("quarantine/bars.q/v1.parquet")
    assert entry.tags["rule.low_not_positive"] == "1"
    assert catalog.get_dataset_sync("bars.q", "v1").tags["rows_quarantined"] == "2"


def test_a_mapping_that_duplicates_a_column_is_refused(bars: pd.DataFrame) -> None:
    storage = MemoryStorage()
    with pytest.raises(IngestionError, match=r"duplicate column\(s\) \['close'\]"):
        DataIngestionPipeline(storage, quarantine=True).ingest_frame_sync(
            bars.assign(adj_close=bars["close"]), name="bars.x", version="v1", column_map={"adj_close": "close"}
        )
    assert storage.list_keys("") == []


def test_an_existing_version_is_refused_before_anything_is_written(bars: pd.DataFrame, catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    pipeline = DataIngestionPipeline(storage, catalog, quarantine=True)
    pipeline.ingest_frame_sync(bars, name="bars.once", version="v1")
    before = storage.list_keys("")
    with pytest.raises(DatasetVersionExists, match="immutable"):
        pipeline.ingest_frame_sync(_broken(bars), name="bars.once", version="v1")
    assert storage.list_keys("") == before
    assert catalog.list_versions_sync(quarantine_name("bars.once")) == []


def test_csv_with_mapped_columns_epoch_times_and_one_symbol(tmp_path: Path, catalog: DataCatalog) -> None:
    bars = generate_market_data(["XYZ"], periods=50, freq="1D", seed=3)
    source = pd.DataFrame(
        {
            "Time": bars["timestamp"].array.asi8 // 1_000_000,
            "Open": bars["open"],
            "High": bars["high"],
            "Low": bars["low"],
            "Close": bars["close"],
            "Vol": bars["volume"],
        }
    )
    path = tmp_path / "xyz.csv"
    source.to_csv(path, index=False)
    storage = LocalFileStorage(tmp_path / "lake")
    entry = DataIngestionPipeline(storage, catalog).ingest_file_sync(
        path,
        name="bars.xyz-1d",
        version="v1",
        column_map={
            "Time": "timestamp",
            "Open": "open",
            "High": "high",
            "Low": "low",
            "Close": "close",
            "Vol": "volume",
        },
        symbol="XYZ",
        timestamp_unit="ms",
    )
    assert isinstance(entry, DatasetMetadata)
    assert entry.tags["file"] == "xyz.csv"
    assert entry.tags["source"] == "file"
    stored = storage.read_dataset("bars.xyz-1d")
    assert (stored["timestamp"] == bars["timestamp"]).all()
    np.testing.assert_allclose(stored["close"], bars["close"], rtol=1e-15)


def test_parquet_with_local_times_in_another_zone(tmp_path: Path) -> None:
    bars = generate_market_data(["AAA"], periods=10, freq="1h", seed=2)
    local = bars.assign(timestamp=bars["timestamp"].dt.tz_convert("America/New_York").dt.tz_localize(None))
    path = tmp_path / "aaa.parquet"
    local.to_parquet(path)
    storage = MemoryStorage()
    DataIngestionPipeline(storage).ingest_file_sync(path, name="bars.aaa", version="v1", source_tz="America/New_York")
    assert (storage.read_dataset("bars.aaa")["timestamp"] == bars["timestamp"]).all()


def test_text_timestamps_with_offsets_become_utc() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": ["2024-01-01T10:00:00+01:00", "2024-01-01T10:00:00Z"],
            "symbol": ["A", "B"],
            "open": ["1", "1"],
            "high": [2, 2],
            "low": [0.5, 0.5],
            "close": [1.5, 1.5],
            "volume": [10, 10],
        }
    )
    out = normalise_bars(frame)
    assert out["timestamp"].tolist() == [pd.Timestamp("2024-01-01T09:00Z"), pd.Timestamp("2024-01-01T10:00Z")]
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["open"].dtype == np.float64


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("dir", "is a directory"),
        ("suffix", "unsupported suffix"),
    ],
)
def test_file_errors_are_plain(tmp_path: Path, setup: str, message: str) -> None:
    path = {"missing": tmp_path / "nope.csv", "dir": tmp_path, "suffix": tmp_path / "bars.xlsx"}[setup]
    if setup == "suffix":
        path.write_bytes(b"x")
    with pytest.raises(IngestionError, match=message):
        DataIngestionPipeline(MemoryStorage()).ingest_file_sync(path, name="bars.f", version="v1")


def test_numeric_timestamps_need_a_unit_and_missing_columns_are_named() -> None:
    frame = pd.DataFrame({"timestamp": [1, 2], "symbol": ["A", "A"], "open": 1.0, "high": 1.0, "low": 1.0})
    with pytest.raises(IngestionError, match=r"missing column\(s\) \['close', 'volume'\]"):
        normalise_bars(frame)
    with pytest.raises(IngestionError, match="timestamp_unit="):
        normalise_bars(frame.assign(close=1.0, volume=1.0))


def test_synthetic_provider_async_with_defaults(catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    pipeline = DataIngestionPipeline(storage, catalog)
    entry = asyncio.run(
        pipeline.ingest_market_data(
            provider="synthetic",
            symbols=["BTC-USDT", "ETH-USDT"],
            timeframe="1h",
            start_date="2024-01-01",
            end_date="2024-01-03",
            version="v1",
            seed=3,
        )
    )
    assert isinstance(entry, DatasetMetadata)
    assert entry.name == "bars.synthetic-1h"
    assert entry.row_count == 2 * 48
    assert entry.tags["source"] == "synthetic"
    assert entry.tags["timeframe"] == "1h"
    assert entry.tags["seed"] == "3"
    expected = generate_market_data(["BTC-USDT", "ETH-USDT"], start="2024-01-01", periods=48, freq="1h", seed=3)
    assert bars_checksum(storage.read_dataset("bars.synthetic-1h")) == bars_checksum(expected)


def test_unknown_provider_and_bad_timeframe_are_explained() -> None:
    pipeline = DataIngestionPipeline(MemoryStorage())
    with pytest.raises(IngestionError, match=r"unknown provider 'binance'.*provider='csv'"):
        pipeline.ingest_market_data_sync(provider="binance", symbols=["BTC/USDT"])
    with pytest.raises(IngestionError, match="timeframe '1 fortnight'"):
        pipeline.ingest_market_data_sync(timeframe="1 fortnight")
    with pytest.raises(IngestionError, match="pass path="):
        pipeline.ingest_market_data_sync(provider="csv")


@pytest.mark.parametrize(("timeframe", "freq"), [("1m", "1min"), ("15m", "15min"), ("4h", "4h"), ("1d", "1D")])
def test_timeframes_map_to_pandas_frequencies(timeframe: str, freq: str) -> None:
    assert timeframe_to_freq(timeframe) == freq


def test_bars_checksum_ignores_order_and_sees_any_change(bars: pd.DataFrame) -> None:
    shuffled = bars.sample(frac=1.0, random_state=1)
    assert bars_checksum(shuffled) == bars_checksum(bars)
    nudged = bars.copy()
    nudged.loc[17, "close"] = np.nextafter(nudged.loc[17, "close"], np.inf)
    assert bars_checksum(nudged) != bars_checksum(bars)


def test_kafka_encoding_round_trips_exactly(bars: pd.DataFrame) -> None:
    pairs = encode_bars(bars)
    assert [key for key, _ in pairs[:2]] == [b"AAA", b"AAA"]
    decoded = decode_bars([value for _, value in pairs])
    pd.testing.assert_frame_equal(decoded, bars.reset_index(drop=True), check_exact=True)


def test_stream_version_names_round_trip() -> None:
    assert parse_version(version_for(3, 120, 499)) == (3, 120, 499)
    assert parse_version("v1") is None


def test_read_ingested_dedupes_overlapping_ranges_from_different_batch_boundaries(bars: pd.DataFrame) -> None:
    # What a sink without the offset check would leave after a crash: the same offsets in two differently cut batches.
    storage = MemoryStorage()
    aaa = bars[bars["symbol"] == "AAA"].reset_index(drop=True)
    storage.write_dataset("stream.t", aaa.iloc[0:80], version=version_for(0, 0, 79))
    storage.write_dataset("stream.t", aaa.iloc[50:120], version=version_for(0, 50, 119))
    raw = read_ingested(storage, "stream.t", dedupe=False)
    assert len(raw) == 150
    clean = read_ingested(storage, "stream.t")
    assert len(clean) == 120
    assert bars_checksum(clean) == bars_checksum(aaa)
    assert len(read_ingested(storage, "stream.none")) == 0


def test_compaction_writes_the_deduplicated_union_with_lineage(bars: pd.DataFrame, catalog: DataCatalog) -> None:
    storage = MemoryStorage()
    pipeline = DataIngestionPipeline(storage, catalog)
    aaa = bars[bars["symbol"] == "AAA"].reset_index(drop=True)
    pipeline.ingest_frame_sync(aaa.iloc[0:80], name="stream.c", version=version_for(0, 0, 79))
    pipeline.ingest_frame_sync(aaa.iloc[60:120], name="stream.c", version=version_for(0, 60, 119))
    manifest = compact_ingested(storage, "stream.c", target="bars.c-compacted", version="v1", catalog=catalog)
    assert manifest.row_count == 120
    assert bars_checksum(storage.read_dataset("bars.c-compacted")) == bars_checksum(aaa)
    entry = catalog.get_dataset_sync("bars.c-compacted", "v1")
    assert entry.quality_level == DataQuality.CURATED
    assert {ref.version for ref in catalog.lineage_sync("bars.c-compacted", "v1")} == {"p0-o0-79", "p0-o60-119"}


def test_csv_provider_reads_the_file_and_keeps_the_requested_symbols(
    tmp_path: Path, bars: pd.DataFrame, catalog: DataCatalog
) -> None:
    path = tmp_path / "bars.csv"
    bars.to_csv(path, index=False)
    storage = MemoryStorage()
    entry = DataIngestionPipeline(storage, catalog).ingest_market_data_sync(
        "csv", ["BBB"], "1h", path=path, version="v1"
    )
    assert isinstance(entry, DatasetMetadata)
    assert entry.name == "bars.csv-1h"
    assert entry.symbols == ("BBB",)
    assert bars_checksum(storage.read_dataset("bars.csv-1h")) == bars_checksum(bars[bars["symbol"] == "BBB"])
