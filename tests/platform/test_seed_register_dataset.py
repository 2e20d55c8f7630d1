"""The architecture seed's ``register_dataset(name, dataset_type, quality_level, schema, tags)`` (issue 15 item 12).

A catalog entry describes stored data; without the data the catalog cannot compute its location, checksum or
row count, so the seed's shape is refused with the exact call that computes them, and that call works.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qframe.research.data_lake import DataCatalog, DataQuality, DatasetType, MemoryStorage, generate_market_data
from qframe.research.data_lake.catalog import IncompleteRegistration

pytestmark = pytest.mark.unit

SEED_CALL: dict[str, Any] = {
    "name": "BTC_1H_2024",
    "dataset_type": DatasetType.RAW_MARKET_DATA,
    "quality_level": DataQuality.VALIDATED,
    "schema": {"open": "float64", "high": "float64", "low": "float64", "close": "float64", "volume": "float64"},
    "tags": {"exchange": "binance", "symbol": "BTC/USDT"},
}


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[DataCatalog]:
    cat = DataCatalog(db_url=f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def test_the_seed_call_shape_names_the_call_that_computes_what_it_lacks(catalog: DataCatalog) -> None:
    with pytest.raises(TypeError) as refused:
        asyncio.run(catalog.register_dataset(**SEED_CALL))  # the seed awaits it
    assert isinstance(refused.value, IncompleteRegistration)
    message = str(refused.value)
    assert "lacks version, location, checksum, row_count" in message
    assert "\n" not in message
    replacement = re.search(r"`(catalog\.register_manifest_sync\(storage\.write_dataset\(.*?)`", message)
    assert replacement is not None, message
    assert catalog.count_sync() == 0

    # The call in the message, run as written, registers the data with everything the seed's call lacked.
    df = generate_market_data(["BTC/USDT"], periods=48, freq="1h", seed=1)
    storage = MemoryStorage()
    namespace = {
        "catalog": catalog,
        "storage": storage,
        "df": df,
        "DatasetType": DatasetType,
        "DataQuality": DataQuality,
    }
    meta = eval(replacement.group(1), namespace)  # noqa: S307 - the test runs the message's own text
    assert (meta.name, meta.version, meta.row_count) == ("btc_1h_2024", "v1", 48)
    assert meta.tags == SEED_CALL["tags"]
    assert meta.symbols == ("BTC/USDT",)
    assert meta.checksum.startswith("sha256:")
    assert meta.location.endswith("v1")
    assert catalog.get_dataset_sync("btc_1h_2024", "v1") == meta


def test_the_sync_form_without_only_the_checksum_names_it(catalog: DataCatalog) -> None:
    with pytest.raises(IncompleteRegistration, match=r"lacks checksum: .*register_manifest_sync"):
        catalog.register_dataset_sync(
            "bars.x",
            version="v1",
            dataset_type=DatasetType.RAW_MARKET_DATA,
            quality_level=DataQuality.VALIDATED,
            schema={"close": "float64"},
            location="memory://datasets/bars.x/v1",
            row_count=3,
        )
