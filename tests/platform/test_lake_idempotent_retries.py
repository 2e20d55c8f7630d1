"""Idempotent retries on a laptop lake (SQLite catalog): the same content again adopts what is there, other content
is refused before anything changes, and a failed registration never deletes data the catalog may point at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from qframe.research.data_lake.catalog import (
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetType,
)
from qframe.research.data_lake.feature_store import FeatureStore
from qframe.research.data_lake.ingestion import DataIngestionPipeline
from qframe.research.data_lake.storage import DatasetVersionExists, LocalFileStorage, MemoryStorage, StorageMetadata
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.features import compute_features

pytestmark = pytest.mark.unit


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[DataCatalog]:
    with DataCatalog(f"sqlite:///{tmp_path / 'catalog.db'}") as opened:
        yield opened


def bars(seed: int = 0) -> pd.DataFrame:
    return generate_market_data(["AAA", "BBB"], periods=24 * 70, freq="1h", seed=seed)


def test_content_checksum_of_predicts_the_written_checksum() -> None:
    storage = MemoryStorage()
    frame = bars()
    predicted = storage.content_checksum_of(frame)
    assert storage.write_dataset("bars.x", frame, version="v1").checksum == predicted
    assert storage.content_checksum_of(bars(seed=1)) != predicted


def test_write_adopts_an_identical_committed_version_and_refuses_other_data() -> None:
    storage = MemoryStorage()
    first = storage.write_dataset("bars.x", bars(), version="v1")
    keys = storage.list_keys("datasets/")
    again = storage.write_dataset("bars.x", bars(), version="v1", adopt_identical=True)
    assert again.checksum == first.checksum
    assert storage.list_keys("datasets/") == keys  # nothing written
    with pytest.raises(DatasetVersionExists):
        storage.write_dataset("bars.x", bars(seed=1), version="v1", adopt_identical=True)
    with pytest.raises(DatasetVersionExists):
        storage.write_dataset("bars.x", bars(), version="v1")  # without adopt_identical: still immutable


def test_registering_the_same_manifest_twice_returns_the_entry(catalog: DataCatalog) -> None:
    manifest = MemoryStorage().write_dataset("bars.x", bars(), version="v1")
    kwargs: dict[str, Any] = {"dataset_type": DatasetType.RAW_MARKET_DATA, "quality_level": DataQuality.VALIDATED}
    first = catalog.register_manifest_sync(manifest, **kwargs, tags={"a": "1"})
    assert catalog.register_manifest_sync(manifest, **kwargs, tags={"a": "1"}) == first
    with pytest.raises(DatasetAlreadyRegistered):
        catalog.register_manifest_sync(manifest, **kwargs, tags={"a": "2"})
    assert catalog.list_versions_sync("bars.x") == ["v1"]


def test_ingest_retry_after_an_unregistered_commit_registers_it(tmp_path: Path, catalog: DataCatalog) -> None:
    storage = LocalFileStorage(tmp_path / "lake")
    # What a writer that died between the lake commit and the registration leaves behind.
    storage.write_dataset("bars.r", bars().sort_values(["symbol", "timestamp"]), version="v1")
    entry = DataIngestionPipeline(storage, catalog).ingest_frame_sync(bars(), name="bars.r", version="v1")
    assert entry.checksum == storage.manifest("bars.r", "v1").checksum
    with pytest.raises(DatasetVersionExists, match="other data"):
        DataIngestionPipeline(storage, catalog).ingest_frame_sync(bars(seed=2), name="bars.r", version="v1")


class RivalAtSameLocation(LocalFileStorage):
    """After every write, another writer registers this very location under the same version, other checksum."""

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
            location=manifest.location,
            checksum="sha256:rival",
            row_count=0,
        )
        return manifest


def test_a_refused_registration_keeps_data_the_catalog_points_at(tmp_path: Path, catalog: DataCatalog) -> None:
    storage = RivalAtSameLocation(tmp_path / "lake", rival=catalog)
    with pytest.raises(DatasetAlreadyRegistered):
        FeatureStore(storage, catalog).store_features_sync("technical", compute_features(bars()), "v1")
    # The catalog names this location: the data stays for `qframe data fsck` to judge, never deleted blindly.
    assert storage.list_versions("features.technical") == ["v1"]
