"""Feature store over a real storage and a SQLite catalog: versions, latest, filters, no orphan versions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.catalog import (
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetNotRegistered,
    DatasetRef,
    DatasetType,
)
from qframe.research.data_lake.feature_store import FeatureStore, feature_dataset_name
from qframe.research.data_lake.storage import (
    DataLakeStorage,
    DatasetVersionExists,
    LayoutError,
    LocalFileStorage,
    MemoryStorage,
    StorageError,
    StorageMetadata,
)

pytestmark = pytest.mark.unit


def features(symbols: list[str], periods: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=periods, freq="1D", tz="UTC")
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "ret_1": rng.normal(0, 0.01, periods),
                    "vol_20": rng.uniform(0.1, 0.5, periods),
                    "rsi_14": rng.uniform(0, 100, periods),
                }
            )
            for sym in symbols
        ],
        ignore_index=True,
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Any:
    cat = DataCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


@pytest.fixture
def store(catalog: DataCatalog, tmp_path: Path) -> FeatureStore:
    return FeatureStore(LocalFileStorage(tmp_path / "lake"), catalog)


def test_store_and_get_roundtrip_with_catalog_entry(store: FeatureStore) -> None:
    df = features(["BTC/USDT", "ETH/USDT"], 90)
    meta = store.store_features_sync("technical", df, "v1", description="returns, vol, rsi")
    assert meta.name == "features.technical"
    assert meta.dataset_type is DatasetType.FEATURES
    assert meta.quality_level is DataQuality.CURATED
    assert meta.tags["feature_group"] == "technical"
    assert meta.row_count == 180
    assert meta.symbols == ("BTC/USDT", "ETH/USDT")
    assert meta.checksum == store.storage.manifest("features.technical", "v1").checksum
    out = store.get_features_sync("technical")
    pd.testing.assert_frame_equal(out, df, check_dtype=False)


def test_latest_resolves_through_the_catalog(store: FeatureStore) -> None:
    store.store_features_sync("technical", features(["A"], 10, seed=1), "v2")
    newest = features(["A"], 10, seed=2)
    store.store_features_sync("technical", newest, "v10")
    assert store.list_versions("technical") == ["v2", "v10"]
    pd.testing.assert_frame_equal(store.get_features_sync("technical"), newest, check_dtype=False)
    pd.testing.assert_frame_equal(
        store.get_features_sync("technical", "v2"), features(["A"], 10, seed=1), check_dtype=False
    )
    with pytest.raises(DatasetNotRegistered, match=r"'features\.nothing' version 'latest'"):
        store.get_features_sync("nothing")


def test_filters_push_down_to_the_lake_files(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    df = features(["AAA", "BBB", "CCC"], 90)  # three months per symbol
    store.store_features_sync("technical", df, "v1")
    opened: list[str] = []
    real_open = store.storage.fs.open

    def spy(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(store.storage.fs, "open", spy)
    out = store.get_features_sync(
        "technical", symbols=["BBB"], start="2024-02-03T00:00Z", end="2024-02-10T00:00Z", columns=["rsi_14"]
    )
    assert [p for p in opened if p.endswith(".parquet")] == [
        p for p in opened if "symbol=BBB/month=2024-02/" in p and p.endswith(".parquet")
    ]
    assert len([p for p in opened if p.endswith(".parquet")]) == 1
    assert list(out.columns) == ["timestamp", "symbol", "rsi_14"]
    assert len(out) == 7
    assert set(out["symbol"]) == {"BBB"}


def test_versions_are_immutable(store: FeatureStore) -> None:
    store.store_features_sync("technical", features(["A"], 5, seed=1), "v1")
    with pytest.raises(DatasetAlreadyRegistered, match="immutable"):
        store.store_features_sync("technical", features(["A"], 5, seed=2), "v1")
    pd.testing.assert_frame_equal(
        store.get_features_sync("technical", "v1"), features(["A"], 5, seed=1), check_dtype=False
    )


class RacingStorage(LocalFileStorage):
    """A lake whose every write is followed by another writer registering the same version in the catalog.

    That is the window between "write" and "register" in which a concurrent writer (with another lake)
    wins the catalog race.
    """

    def __init__(self, root: Path, rival: DataCatalog) -> None:
        super().__init__(root)
        self.rival = rival

    def write_dataset(self, name: str, df: pd.DataFrame, **kwargs: Any) -> StorageMetadata:
        manifest = super().write_dataset(name, df, **kwargs)
        self.rival.register_dataset_sync(
            name,
            version=manifest.version,
            dataset_type=DatasetType.FEATURES,
            quality_level=DataQuality.RAW,
            schema={},
            location="s3://another-lake/x",
            checksum="sha256:rival",
            row_count=0,
        )
        return manifest


def test_failed_registration_removes_the_version_just_written(tmp_path: Path, catalog: DataCatalog) -> None:
    storage = RacingStorage(tmp_path / "lake", rival=catalog)
    store = FeatureStore(storage, catalog)
    with pytest.raises(DatasetAlreadyRegistered):
        store.store_features_sync("technical", features(["A"], 30), "v1")
    assert storage.list_versions("features.technical") == []
    assert storage.list_keys("datasets/features.technical/") == []
    assert catalog.get_dataset_sync("features.technical", "v1").checksum == "sha256:rival"


def test_an_uncatalogued_lake_version_is_not_silently_replaced(store: FeatureStore) -> None:
    # A lake version without a catalog entry (a writer died between write and register).
    store.storage.write_dataset("features.technical", features(["A"], 5, seed=9), version="v1")
    with pytest.raises(DatasetVersionExists, match=r"catalog does not know it.*delete_version"):
        store.store_features_sync("technical", features(["A"], 5), "v1")
    assert store.list_versions("technical") == []
    store.storage.delete_version("features.technical", "v1")
    store.store_features_sync("technical", features(["A"], 5), "v1")
    assert store.list_versions("technical") == ["v1"]


def test_a_lake_version_changed_behind_the_catalog_is_refused(store: FeatureStore) -> None:
    store.store_features_sync("technical", features(["A"], 5, seed=1), "v1")
    store.storage.write_dataset("features.technical", features(["A"], 5, seed=2), version="v1", overwrite=True)
    with pytest.raises(StorageError, match="lake and catalog disagree"):
        store.get_features_sync("technical", "v1")


def test_lineage_is_recorded(store: FeatureStore, catalog: DataCatalog) -> None:
    ts = pd.date_range("2024-01-01", periods=5, freq="1D", tz="UTC")
    bars = pd.DataFrame({"timestamp": ts, "symbol": "A", "close": 1.0})
    manifest = store.storage.write_dataset("bars.daily", bars, version="v1")
    catalog.register_manifest_sync(manifest, dataset_type="raw_market_data", quality_level="validated")
    meta = store.store_features_sync(
        "technical", features(["A"], 5), "v1", derived_from=[DatasetRef("bars.daily", "v1")]
    )
    assert meta.derived_from == (DatasetRef("bars.daily", "v1"),)
    assert catalog.downstream_sync("bars.daily", "v1") == [DatasetRef("features.technical", "v1")]


def test_bad_feature_input_is_refused_before_anything_is_written(store: FeatureStore) -> None:
    with pytest.raises(LayoutError, match="invalid feature group"):
        store.store_features_sync("Technical Indicators", features(["A"], 5), "v1")
    with pytest.raises(LayoutError, match="no feature columns"):
        store.store_features_sync("technical", features(["A"], 5)[["timestamp", "symbol"]], "v1")
    with pytest.raises(LayoutError, match=r"must be numeric; \['regime'\]"):
        store.store_features_sync("technical", features(["A"], 5).assign(regime="bull"), "v1")
    doubled = pd.concat([features(["A"], 5), features(["A"], 5)], ignore_index=True)
    with pytest.raises(LayoutError, match="duplicate"):
        store.store_features_sync("technical", doubled, "v1")
    naive = features(["A"], 5)
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(LayoutError, match="timezone-naive"):
        store.store_features_sync("technical", naive, "v1")
    with pytest.raises(LayoutError, match="reserved"):
        store.store_features_sync("technical", features(["A"], 5), "latest")
    assert store.storage.list_keys("") == []
    assert store.list_versions("technical") == []


def test_async_api(catalog: DataCatalog) -> None:
    storage: DataLakeStorage = MemoryStorage()
    store = FeatureStore(storage, catalog)
    df = features(["A", "B"], 12)

    async def scenario() -> pd.DataFrame:
        await store.store_features("statistical", df, "v1", "async stored")
        return await store.get_features("statistical", symbols=["B"])

    out = asyncio.run(scenario())
    pd.testing.assert_frame_equal(out, df[df.symbol == "B"].reset_index(drop=True), check_dtype=False)
    assert feature_dataset_name("statistical") == "features.statistical"
