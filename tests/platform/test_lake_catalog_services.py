"""Data catalog on a real PostgreSQL (fresh database per test), and races between separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from qframe.research.data_lake import catalog_models as models
from qframe.research.data_lake.catalog import (
    CatalogError,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetRef,
    DatasetType,
)
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tools.services import PostgresService

pytestmark = pytest.mark.services

PROCESSES = 4

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from qframe.research.data_lake.catalog import DataCatalog, DatasetAlreadyRegistered

    url, start_at, writer = os.environ["CATALOG_URL"], float(os.environ["START_AT"]), os.environ["WRITER"]
    time.sleep(max(0.0, start_at - time.time()))
    catalog = DataCatalog(url)  # every process also migrates the fresh database at the same moment
    try:
        catalog.register_dataset_sync(
            "bars.race", version="v1", dataset_type="raw_market_data", quality_level="raw",
            schema={"close": "double"}, location="s3://lake/x", checksum="sha256:" + writer, row_count=1,
            tags={"writer": writer, "k": "v"}, symbols=["A", "B", "C"],
        )
        print("won", writer, flush=True)
    except DatasetAlreadyRegistered as exc:
        print("exists", exc, flush=True)
    finally:
        catalog.close()
    """
)


@pytest.fixture
def pg_url(postgres: PostgresService) -> Iterator[str]:
    name = f"catalog_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres.url).set(database=name).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def register(catalog: DataCatalog, name: str, version: str = "v1", **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "version": version,
        "dataset_type": DatasetType.RAW_MARKET_DATA,
        "quality_level": DataQuality.VALIDATED,
        "schema": {"close": "double"},
        "location": f"s3://lake/datasets/{name}/{version}",
        "checksum": f"sha256:{name}-{version}",
        "row_count": 10,
    }
    kwargs.update(overrides)
    return catalog.register_dataset_sync(name, **kwargs)


def count(catalog: DataCatalog, table: Any) -> int:
    with catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def race_processes(url: str, workdir: Path) -> list[str]:
    start_at = time.time() + 4.0  # after every interpreter has imported the package
    children = []
    for writer in range(PROCESSES):
        env = {**os.environ, "CATALOG_URL": url, "START_AT": str(start_at), "WRITER": str(writer)}
        log = (workdir / f"child-{writer}.log").open("wb")
        children.append(
            (subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=log, env=env), log)
        )
    outputs = []
    for child, log in children:
        out, _ = child.communicate(timeout=180)
        log.close()
        assert child.returncode == 0, (workdir / f"{log.name}").read_text(errors="replace")[-3000:]
        # structlog's default logger also writes to stdout; keep only the outcome line.
        outcome = [line for line in out.decode().splitlines() if line.startswith(("won", "exists"))]
        assert len(outcome) == 1, out.decode()
        outputs.append(outcome[0])
    return outputs


def test_postgres_roundtrip_search_and_lineage(pg_url: str) -> None:
    with DataCatalog(pg_url) as catalog:
        raw = register(catalog, "bars.raw", tags={"src": "kafka"}, symbols=["BTC/USDT"], start="2024-01-01T00:00Z")
        assert catalog.get_dataset_sync("bars.raw") == raw
        assert raw.start == pd.Timestamp("2024-01-01T00:00Z")
        register(catalog, "features.t", dataset_type="features", derived_from=[DatasetRef("bars.raw", "v1")])
        register(catalog, "backtest.r", dataset_type="backtest_results", derived_from=[DatasetRef("features.t", "v1")])
        assert [m.name for m in catalog.search_sync(tags={"src": "kafka"}, symbol="BTC/USDT")] == ["bars.raw"]
        assert [m.name for m in catalog.search_sync(dataset_type=DatasetType.FEATURES)] == ["features.t"]
        assert [m.name for m in catalog.search_sync(name_prefix="back")] == ["backtest.r"]
        assert catalog.lineage_sync("backtest.r", "v1") == [
            DatasetRef("features.t", "v1"),
            DatasetRef("bars.raw", "v1"),
        ]
        assert catalog.downstream_sync("bars.raw", "v1") == [
            DatasetRef("features.t", "v1"),
            DatasetRef("backtest.r", "v1"),
        ]


def test_postgres_thread_race_has_exactly_one_winner(pg_url: str) -> None:
    catalog = DataCatalog(pg_url)
    barrier = threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        try:
            register(catalog, "bars.race", tags={"writer": str(index)}, symbols=["A", "B"])
            result = f"won:{index}"
        except DatasetAlreadyRegistered:
            result = "exists"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(outcomes) == 12
    assert len(winners) == 1
    assert catalog.get_dataset_sync("bars.race").tags == {"writer": winners[0].split(":")[1]}
    assert count(catalog, models.tags) == 1
    assert count(catalog, models.symbols) == 2
    catalog.close()


def test_postgres_process_race_and_concurrent_migrations(pg_url: str, tmp_path: Path) -> None:
    outputs = race_processes(pg_url, tmp_path)
    winners = [o for o in outputs if o.startswith("won")]
    assert len(winners) == 1, outputs
    assert all("already registered" in o for o in outputs if not o.startswith("won"))
    writer = winners[0].split()[1]
    with DataCatalog(pg_url, migrate=False) as catalog:
        meta = catalog.get_dataset_sync("bars.race", "v1")
        assert meta.tags == {"writer": writer, "k": "v"}
        assert meta.checksum == f"sha256:{writer}"
        assert count(catalog, models.datasets) == 1
        assert count(catalog, models.tags) == 2
        assert count(catalog, models.symbols) == 3
        with catalog.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM catalog_alembic_version")).scalars().all() == ["0001"]


def test_sqlite_process_race_and_concurrent_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    outputs = race_processes(url, tmp_path)
    winners = [o for o in outputs if o.startswith("won")]
    assert len(winners) == 1, outputs
    with DataCatalog(url, migrate=False) as catalog:
        assert catalog.get_dataset_sync("bars.race").tags["writer"] == winners[0].split()[1]
        assert count(catalog, models.tags) == 2
        assert count(catalog, models.symbols) == 3


def test_postgres_failure_inside_the_transaction_writes_nothing(pg_url: str) -> None:
    catalog = DataCatalog(pg_url)
    with catalog.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.symbol = 'BOOM' THEN RAISE EXCEPTION 'symbol BOOM refused' USING ERRCODE = '23514'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON catalog_symbols FOR EACH ROW "
                "EXECUTE FUNCTION refuse_boom()"
            )
        )
    with pytest.raises(CatalogError, match="nothing written"):
        register(catalog, "bars.x", tags={"a": "1"}, symbols=["AAA", "BOOM"])
    for table in (models.datasets, models.tags, models.symbols):
        assert count(catalog, table) == 0
    register(catalog, "bars.x", tags={"a": "1"}, symbols=["AAA"])
    assert catalog.list_versions_sync("bars.x") == ["v1"]
    catalog.close()


def test_postgres_second_catalog_does_not_recreate(pg_url: str) -> None:
    with DataCatalog(pg_url) as first:
        register(first, "bars.keep", tags={"a": "1"})
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        oid_before = conn.execute(text("SELECT 'catalog_datasets'::regclass::oid")).scalar_one()
    with DataCatalog(pg_url) as second:
        assert second.get_dataset_sync("bars.keep").tags == {"a": "1"}
    with engine.connect() as conn:
        # Same table object (not dropped and re-created) and still one alembic version row.
        assert conn.execute(text("SELECT 'catalog_datasets'::regclass::oid")).scalar_one() == oid_before
        assert conn.execute(text("SELECT count(*) FROM catalog_alembic_version")).scalar_one() == 1
    engine.dispose()
