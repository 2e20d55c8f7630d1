"""Data catalog on SQLite: registration, search, lineage, migrations, atomicity and concurrent registrations."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from qframe.research.data_lake import catalog_models as models
from qframe.research.data_lake.catalog import (
    CatalogError,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetNotRegistered,
    DatasetRef,
    DatasetType,
    InvalidRegistration,
    normalise_db_url,
)
from qframe.research.data_lake.storage import MemoryStorage
from sqlalchemy import create_engine, func, inspect, select, text

pytestmark = pytest.mark.unit


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture
def catalog(db_url: str) -> Any:
    cat = DataCatalog(db_url)
    yield cat
    cat.close()


def register(catalog: DataCatalog, name: str, version: str = "v1", **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "version": version,
        "dataset_type": DatasetType.RAW_MARKET_DATA,
        "quality_level": DataQuality.VALIDATED,
        "schema": {"timestamp": "timestamp[ns, tz=UTC]", "symbol": "large_string", "close": "double"},
        "location": f"s3://lake/datasets/{name}/{version}",
        "checksum": f"sha256:{name}-{version}",
        "row_count": 10,
    }
    kwargs.update(overrides)
    return catalog.register_dataset_sync(name, **kwargs)


def test_register_and_get_roundtrip_every_field(catalog: DataCatalog) -> None:
    start = pd.Timestamp("2024-01-01T00:00:00.000000001Z")  # ns precision survives
    meta = register(
        catalog,
        "bars.synthetic-1m",
        "v1",
        tags={"source": "synthetic", "freq": "1m"},
        symbols=["ETH/USDT", "BTC/USDT", "BTC/USDT"],
        start=start,
        end="2024-02-01T00:00Z",
        description="demo bars",
        row_count=1234,
    )
    again = catalog.get_dataset_sync("bars.synthetic-1m", "v1")
    assert again == meta
    assert meta.dataset_type is DatasetType.RAW_MARKET_DATA
    assert meta.quality_level is DataQuality.VALIDATED
    assert list(meta.schema) == ["timestamp", "symbol", "close"]
    assert meta.tags == {"source": "synthetic", "freq": "1m"}
    assert meta.symbols == ("BTC/USDT", "ETH/USDT")
    assert meta.row_count == 1234
    assert meta.start == start
    assert meta.end == pd.Timestamp("2024-02-01T00:00Z")
    assert meta.description == "demo bars"
    assert meta.location == "s3://lake/datasets/bars.synthetic-1m/v1"
    assert meta.created_at.tzinfo is not None
    assert meta.derived_from == ()


def test_latest_is_the_most_recently_registered(catalog: DataCatalog) -> None:
    for version in ("v2", "v10", "v1"):
        register(catalog, "bars.x", version)
    assert catalog.list_versions_sync("bars.x") == ["v2", "v10", "v1"]
    assert catalog.get_dataset_sync("bars.x").version == "v1"
    assert catalog.get_dataset_sync("bars.x", "latest").version == "v1"
    assert catalog.list_versions_sync("nothing.here") == []
    with pytest.raises(DatasetNotRegistered, match=r"'bars.x' version 'v3' is not registered.*\['v2', 'v10', 'v1'\]"):
        catalog.get_dataset_sync("bars.x", "v3")
    with pytest.raises(DatasetNotRegistered, match="'missing' version 'latest'"):
        catalog.get_dataset_sync("missing")


def test_duplicate_registration_is_refused_and_changes_nothing(catalog: DataCatalog) -> None:
    register(catalog, "bars.x", "v1", tags={"a": "1"})
    with pytest.raises(DatasetAlreadyRegistered, match=r"'bars.x' version 'v1' is already registered.*immutable"):
        register(catalog, "bars.x", "v1", tags={"b": "2"}, row_count=99)
    meta = catalog.get_dataset_sync("bars.x", "v1")
    assert meta.tags == {"a": "1"}
    assert meta.row_count == 10


def test_search_by_tags_type_symbol_and_prefix(catalog: DataCatalog) -> None:
    register(catalog, "bars.a", "v1", tags={"src": "kafka", "freq": "1m"}, symbols=["BTC"])
    register(catalog, "bars.a", "v2", tags={"src": "kafka", "freq": "1h"}, symbols=["ETH"])
    register(catalog, "bars_b", "v1", tags={"src": "file", "freq": "1m"}, symbols=["BTC", "ETH"])
    register(catalog, "features.t", "v1", dataset_type=DatasetType.FEATURES, tags={"freq": "1m"}, symbols=["BTC"])

    def refs(found: list[Any]) -> list[tuple[str, str]]:
        return [(m.name, m.version) for m in found]

    assert refs(catalog.search_sync(tags={"src": "kafka"})) == [("bars.a", "v1"), ("bars.a", "v2")]
    assert refs(catalog.search_sync(tags={"src": "kafka", "freq": "1m"})) == [("bars.a", "v1")]
    assert refs(catalog.search_sync(tags={"src": "kafka", "freq": "1d"})) == []
    assert refs(catalog.search_sync(dataset_type=DatasetType.FEATURES)) == [("features.t", "v1")]
    assert refs(catalog.search_sync(dataset_type="raw_market_data", symbol="ETH")) == [
        ("bars.a", "v2"),
        ("bars_b", "v1"),
    ]
    # '_' is a LIKE wildcard: the prefix must be matched literally.
    assert refs(catalog.search_sync(name_prefix="bars_")) == [("bars_b", "v1")]
    assert refs(catalog.search_sync(name_prefix="bars.")) == [("bars.a", "v1"), ("bars.a", "v2")]
    assert len(catalog.search_sync()) == 4
    with pytest.raises(InvalidRegistration, match="dataset_type='nope'"):
        catalog.search_sync(dataset_type="nope")


def test_lineage_is_transitive_nearest_first_and_downstream(catalog: DataCatalog) -> None:
    register(catalog, "bars.raw", "v1")
    register(catalog, "bars.clean", "v1", derived_from=[DatasetRef("bars.raw", "v1")])
    register(catalog, "bars.ref", "v1")
    register(
        catalog,
        "features.t",
        "v1",
        dataset_type="features",
        derived_from=[DatasetRef("bars.clean", "latest"), DatasetRef("bars.ref", "v1")],
    )
    register(
        catalog, "backtest.r", "v1", dataset_type="backtest_results", derived_from=[DatasetRef("features.t", "v1")]
    )
    assert catalog.get_dataset_sync("features.t").derived_from == (
        DatasetRef("bars.clean", "v1"),
        DatasetRef("bars.ref", "v1"),
    )
    assert catalog.lineage_sync("backtest.r", "v1") == [
        DatasetRef("features.t", "v1"),
        DatasetRef("bars.clean", "v1"),
        DatasetRef("bars.ref", "v1"),
        DatasetRef("bars.raw", "v1"),
    ]
    assert catalog.downstream_sync("bars.raw", "v1") == [
        DatasetRef("bars.clean", "v1"),
        DatasetRef("features.t", "v1"),
        DatasetRef("backtest.r", "v1"),
    ]
    assert catalog.lineage_sync("bars.raw", "v1") == []
    with pytest.raises(DatasetNotRegistered, match="register it first"):
        register(catalog, "features.u", "v1", derived_from=[DatasetRef("bars.unknown", "v1")])
    assert catalog.list_versions_sync("features.u") == []


def test_lineage_walk_survives_a_cycle(catalog: DataCatalog) -> None:
    register(catalog, "a.x", "v1")
    register(catalog, "b.x", "v1", derived_from=[DatasetRef("a.x", "v1")])
    register(catalog, "c.x", "v1", derived_from=[DatasetRef("b.x", "v1")])
    # The API cannot create a cycle; a hand-edited database can, and the walk must still end.
    with catalog.engine.begin() as conn:
        ids = dict(conn.execute(select(models.datasets.c.name, models.datasets.c.id)).all())
        conn.execute(models.lineage.insert().values(child_id=ids["a.x"], parent_id=ids["c.x"]))
    assert catalog.lineage_sync("c.x", "v1") == [DatasetRef("b.x", "v1"), DatasetRef("a.x", "v1")]
    assert catalog.downstream_sync("c.x", "v1") == [DatasetRef("a.x", "v1"), DatasetRef("b.x", "v1")]


def test_a_failure_inside_the_transaction_writes_nothing(catalog: DataCatalog) -> None:
    # A real database-side failure after the dataset row and tags were inserted: the symbols insert aborts.
    with catalog.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON catalog_symbols WHEN NEW.symbol = 'BOOM' "
                "BEGIN SELECT RAISE(ABORT, 'symbol BOOM refused'); END"
            )
        )
    with pytest.raises(CatalogError, match="nothing written"):
        register(catalog, "bars.x", "v1", tags={"a": "1", "b": "2"}, symbols=["AAA", "BOOM"])
    with catalog.engine.connect() as conn:
        for table in (models.datasets, models.tags, models.symbols, models.lineage):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
    register(catalog, "bars.x", "v1", tags={"a": "1"}, symbols=["AAA"])
    assert catalog.get_dataset_sync("bars.x").tags == {"a": "1"}


def test_concurrent_thread_registrations_have_exactly_one_winner(db_url: str) -> None:
    catalogs = [DataCatalog(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(catalogs))
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        try:
            register(catalogs[index], "bars.race", "v1", tags={"writer": str(index), "k": "v"}, symbols=["A", "B"])
            result = f"won:{index}"
        except DatasetAlreadyRegistered:
            result = "exists"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(catalogs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(outcomes) == len(catalogs)
    assert len(winners) == 1
    meta = catalogs[0].get_dataset_sync("bars.race", "v1")
    assert meta.tags == {"writer": winners[0].split(":")[1], "k": "v"}
    with catalogs[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(models.tags)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(models.symbols)).scalar_one() == 2
    for cat in catalogs:
        cat.close()


def test_migrations_are_idempotent_and_a_second_catalog_keeps_the_data(db_url: str) -> None:
    first = DataCatalog(db_url)
    register(first, "bars.x", "v1", tags={"a": "1"})
    first.close()
    second = DataCatalog(db_url)
    third = DataCatalog(db_url, migrate=False)
    assert second.get_dataset_sync("bars.x", "v1").tags == {"a": "1"}
    assert third.list_versions_sync("bars.x") == ["v1"]
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM catalog_alembic_version")).scalars().all() == ["0001"]
    tables = set(inspect(engine).get_table_names())
    assert {"catalog_datasets", "catalog_tags", "catalog_symbols", "catalog_lineage", models.VERSION_TABLE} <= tables
    engine.dispose()
    second.close()
    third.close()


def test_unmigrated_database_without_migrate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"no catalog tables.*migrate=True"):
        DataCatalog(f"sqlite:///{tmp_path / 'empty.db'}", migrate=False)


def test_bad_urls_are_clear_errors() -> None:
    with pytest.raises(CatalogError, match="not a SQLAlchemy URL"):
        DataCatalog("not a url at all")
    with pytest.raises(CatalogError, match="unsupported database 'mysql'"):
        DataCatalog("mysql://u:p@127.0.0.1/db")
    assert normalise_db_url("postgresql://u:p@db:5432/catalog") == "postgresql+psycopg://u:p@db:5432/catalog"
    assert normalise_db_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": "latest"}, "reserved"),
        ({"dataset_type": "tick_data"}, "dataset_type='tick_data' is not one of"),
        ({"quality_level": "gold"}, "quality_level='gold'"),
        ({"start": "2024-01-01"}, "no timezone"),
        ({"start": "2024-02-01T00:00Z", "end": "2024-01-01T00:00Z"}, "is after end"),
        ({"row_count": -1}, "non-negative"),
        ({"symbols": "BTC"}, "wrap it in"),
        ({"tags": {"k": 1}}, "tags must map"),
        ({"checksum": ""}, "checksum"),
        ({"derived_from": [("bars.x", "v1")]}, "DatasetRef"),
    ],
)
def test_bad_registrations_are_refused_before_writing(
    catalog: DataCatalog, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRegistration, match=message):
        register(catalog, "bars.x", **overrides)
    with pytest.raises(InvalidRegistration, match="invalid dataset name"):
        register(catalog, "Bad Name", "v1")
    assert catalog.search_sync() == []


def test_register_manifest_takes_everything_from_the_storage(catalog: DataCatalog) -> None:
    ts = pd.date_range("2024-01-01", periods=30, freq="1D", tz="UTC")
    df = pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT", "close": 1.0})
    manifest = MemoryStorage().write_dataset("bars.m", df, version="v1")
    meta = catalog.register_manifest_sync(
        manifest, dataset_type=DatasetType.RAW_MARKET_DATA, quality_level=DataQuality.RAW, tags={"src": "test"}
    )
    assert (meta.name, meta.version, meta.row_count) == ("bars.m", "v1", 30)
    assert meta.checksum == manifest.checksum
    assert meta.location == manifest.location
    assert meta.schema == manifest.schema
    assert meta.symbols == ("BTC/USDT",)
    assert (meta.start, meta.end) == (ts[0], ts[-1])


def test_async_api_matches_the_sync_api(catalog: DataCatalog) -> None:
    async def scenario() -> tuple[Any, ...]:
        registered = await catalog.register_dataset(
            "bars.async",
            version="v1",
            dataset_type=DatasetType.RAW_MARKET_DATA,
            quality_level=DataQuality.RAW,
            schema={"close": "double"},
            location="memory://x",
            checksum="sha256:1",
            row_count=1,
            tags={"mode": "async"},
        )
        fetched = await catalog.get_dataset("bars.async")
        found = await catalog.search(tags={"mode": "async"})
        with pytest.raises(DatasetAlreadyRegistered):
            await catalog.register_dataset(
                "bars.async",
                version="v1",
                dataset_type=DatasetType.RAW_MARKET_DATA,
                quality_level=DataQuality.RAW,
                schema={},
                location="x",
                checksum="y",
                row_count=0,
            )
        return registered, fetched, found

    registered, fetched, found = asyncio.run(scenario())
    assert registered == fetched
    assert found == [fetched]


def test_in_memory_sqlite_works_for_notebooks() -> None:
    with DataCatalog("sqlite://") as cat:
        register(cat, "bars.x", "v1")
        assert cat.list_versions_sync("bars.x") == ["v1"]
