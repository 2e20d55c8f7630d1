"""Catalog (real PostgreSQL) and lake (local disk and a real MinIO) stay reconciled through failures (issue 14.3).

Each case is reproduced as it was reported: (a) the database drops after a registration committed but before
its read-back, (b) ``overwrite=True`` on a registered version, (c) the database is down between the lake
commit and the registration. A database outage here is real: the test database stops accepting
connections (``ALLOW_CONNECTIONS false``) and its sessions are terminated, at the exact point named.
``qframe data fsck`` then finds and repairs every kind of divergence.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import psycopg
import pytest
import structlog
from qframe.research.cli import app
from qframe.research.data_lake import fsck
from qframe.research.data_lake.catalog import (
    PROBLEM_TAG,
    CatalogUnavailable,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetNotRegistered,
    DatasetRef,
    DatasetType,
)
from qframe.research.data_lake.feature_store import FeatureStore
from qframe.research.data_lake.ingestion import DataIngestionPipeline
from qframe.research.data_lake.storage import DataLakeStorage, LocalFileStorage, MinIOStorage, StorageMetadata
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.features import compute_features
from sqlalchemy import event
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tools.services import MinioService, PostgresService

pytestmark = pytest.mark.services


class Database:
    """A fresh database on the shared server that a test can take down and bring back."""

    def __init__(self, postgres: PostgresService) -> None:
        self.postgres = postgres
        self.name = f"reconcile_{uuid.uuid4().hex[:10]}"
        self.url = make_url(postgres.url).set(database=self.name).render_as_string(hide_password=False)
        self._admin("CREATE DATABASE {db}")

    def _admin(self, statement: str) -> None:
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(statement.format(db=f'"{self.name}"'))

    def down(self) -> None:
        self._admin("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )

    def up(self) -> None:
        self._admin("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")

    def drop(self) -> None:
        self.up()
        self._admin("DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture
def database(postgres: PostgresService) -> Iterator[Database]:
    db = Database(postgres)
    yield db
    db.drop()


@pytest.fixture
def catalog(database: Database) -> Iterator[DataCatalog]:
    with DataCatalog(database.url) as opened:
        yield opened


@pytest.fixture(params=["disk", "minio"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> DataLakeStorage:
    if request.param == "disk":
        return LocalFileStorage(tmp_path / "lake")
    minio: MinioService = request.getfixturevalue("minio")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", **minio.boto3_kwargs()).create_bucket(Bucket=bucket)
    return MinIOStorage(
        minio.endpoint_url.removeprefix("http://"),
        minio.access_key_id,
        minio.secret_access_key,
        bucket,
        secure=False,
        prefix="lake",
        region_name=minio.region,
    )


def bars(seed: int = 0, periods: int = 24 * 40) -> pd.DataFrame:
    return generate_market_data(["AAA", "BBB"], periods=periods, freq="1h", seed=seed)


def no_secret(text: str, database: Database) -> None:
    assert database.postgres.password not in text


# --- (a) the database drops after the registration committed, before its read-back -------------------


def drop_after_insert(catalog: DataCatalog, database: Database) -> None:
    """Takes the database down at the first catalog read after a dataset row was inserted (the read-back)."""
    armed = {"insert": False}

    @event.listens_for(catalog.engine, "after_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CATALOG_DATASETS"):
            armed["insert"] = True

    original = catalog.get_dataset_sync

    def get_dataset_sync(*args: Any, **kwargs: Any) -> Any:
        if armed["insert"]:
            armed["insert"] = False
            database.down()
        return original(*args, **kwargs)

    catalog.get_dataset_sync = get_dataset_sync  # type: ignore[method-assign]


def test_a_lost_read_back_keeps_the_registered_data_and_the_retry_succeeds(
    lake: DataLakeStorage, catalog: DataCatalog, database: Database
) -> None:
    store = FeatureStore(lake, catalog)
    frame = compute_features(bars())
    drop_after_insert(catalog, database)
    with pytest.raises(CatalogUnavailable, match="store the same frame again") as raised:
        store.store_features_sync("technical", frame, "v1")
    no_secret(str(raised.value), database)

    database.up()
    registered = catalog.get_dataset_sync("features.technical", "v1")  # the registration did commit
    assert lake.manifest("features.technical", "v1").checksum == registered.checksum  # and its data is still there
    again = store.store_features_sync("technical", frame, "v1")  # the retry is idempotent
    assert again.checksum == registered.checksum
    assert catalog.list_versions_sync("features.technical") == ["v1"]
    pd.testing.assert_frame_equal(
        store.get_features_sync("technical", "v1"),
        lake.read_dataset("features.technical", version="v1"),
    )


# --- (b) overwrite=True on a registered version ---------------------------------------------------------


def test_b_overwrite_of_a_registered_version_is_refused_before_anything_changes(
    lake: DataLakeStorage, catalog: DataCatalog
) -> None:
    pipeline = DataIngestionPipeline(lake, catalog)
    original = pipeline.ingest_frame_sync(bars(seed=0), name="bars.b", version="v1")
    before = lake.read_dataset("bars.b", version="v1")

    with pytest.raises(DatasetAlreadyRegistered, match=r"nothing was written.*new version"):
        pipeline.ingest_frame_sync(bars(seed=1), name="bars.b", version="v1", overwrite=True)

    assert lake.manifest("bars.b", "v1").checksum == catalog.get_dataset_sync("bars.b", "v1").checksum
    pd.testing.assert_frame_equal(lake.read_dataset("bars.b", version="v1"), before)
    # overwrite=True with the registered content itself is the repair it is meant for, and is allowed.
    repaired = pipeline.ingest_frame_sync(bars(seed=0), name="bars.b", version="v1", overwrite=True)
    assert isinstance(original, type(repaired))
    assert repaired.checksum == original.checksum == lake.manifest("bars.b", "v1").checksum


# --- (c) the database is down between the lake commit and the registration -------------------------------


def down_after_lake_commit(lake: DataLakeStorage, database: Database) -> None:
    original = lake.write_dataset

    def write_dataset(*args: Any, **kwargs: Any) -> StorageMetadata:
        manifest = original(*args, **kwargs)
        database.down()
        return manifest

    lake.write_dataset = write_dataset  # type: ignore[method-assign]


def test_c_outage_after_the_lake_commit_is_a_clear_error_and_the_retry_registers(
    lake: DataLakeStorage, catalog: DataCatalog, database: Database
) -> None:
    pipeline = DataIngestionPipeline(lake, catalog)
    down_after_lake_commit(lake, database)
    with pytest.raises(CatalogUnavailable, match=r"unreachable.*run the same ingest again") as raised:
        pipeline.ingest_frame_sync(bars(), name="bars.c", version="v1")
    no_secret(str(raised.value), database)
    del lake.write_dataset  # the instance patch; the class method again

    database.up()
    with pytest.raises(DatasetNotRegistered):
        catalog.get_dataset_sync("bars.c", "v1")
    registered = pipeline.ingest_frame_sync(bars(), name="bars.c", version="v1")
    assert registered.checksum == lake.manifest("bars.c", "v1").checksum
    assert catalog.get_dataset_sync("bars.c", "v1").checksum == registered.checksum


# --- fsck -------------------------------------------------------------------------------------------------


def dead_writer_lease() -> bytes:
    """The lease a real writer process wrote; the process has exited by the time it is used."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from qframe.research.data_lake.storage.writer_lease import lease_bytes; "
            "sys.stdout.write(lease_bytes().decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(out)["start_ticks"] is not None
    return out.encode()


def make_every_problem(lake: DataLakeStorage, catalog: DataCatalog) -> None:
    pipeline = DataIngestionPipeline(lake, catalog)
    for version in ("v1", "v2", "v3"):
        pipeline.ingest_frame_sync(bars(seed=int(version[1])), name="bars.f", version=version)
    # missing-data, nothing derived: v2's data deleted behind the catalog's back
    lake.delete_version("bars.f", "v2")
    # missing-data with a derived dataset: v3's data deleted, features derived from it stay registered
    FeatureStore(lake, catalog).store_features_sync(
        "technical", compute_features(bars(seed=3)), "v1", derived_from=[DatasetRef("bars.f", "v3")]
    )
    lake.delete_version("bars.f", "v3")
    # mismatch: v1 replaced in the lake with other data (what overwrite=True did before the fix)
    lake.write_dataset("bars.f", bars(seed=9), version="v1", overwrite=True)
    # orphan: committed in the lake, never registered
    lake.write_dataset("bars.orphan", bars(seed=4), version="v1")
    # dead attempt: a killed writer's attempt folder (lease of an exited process, one data file)
    attempt = "datasets/bars.orphan/v1/attempt-20260101T000000-0123456789ab"
    lake.put_bytes(f"{attempt}/_writer.json", dead_writer_lease())
    lake.put_bytes(f"{attempt}/symbol=AAA/month=2024-01/part-00000.parquet", b"\0" * 4096)


def kinds(report: fsck.Report) -> list[tuple[str, str, str]]:
    return sorted((f.kind, f.name, f.version) for f in report.problems)


EXPECTED = [
    ("dead-attempt", "bars.orphan", "v1"),
    ("mismatch", "bars.f", "v1"),
    ("missing-data", "bars.f", "v2"),
    ("missing-data", "bars.f", "v3"),
    ("orphan", "bars.orphan", "v1"),
]


def test_fsck_finds_and_repairs_every_kind(lake: DataLakeStorage, catalog: DataCatalog) -> None:
    make_every_problem(lake, catalog)
    report = fsck.check(lake, catalog)
    assert kinds(report) == EXPECTED

    fsck.repair(lake, catalog, report, orphan_grace=pd.Timedelta(0))
    assert report.problems == [], [(f.kind, f.name, f.repair) for f in report.findings]
    assert kinds(fsck.check(lake, catalog)) == []

    adopted = catalog.get_dataset_sync("bars.orphan", "v1")
    assert adopted.checksum == lake.manifest("bars.orphan", "v1").checksum
    assert adopted.quality_level is DataQuality.RAW
    assert adopted.dataset_type is DatasetType.RAW_MARKET_DATA
    assert catalog.list_versions_sync("bars.f") == ["v1", "v3"]  # v2 removed: gone and nothing derived from it
    for version in ("v1", "v3"):  # kept for lineage / inspection, quarantined with the reason
        entry = catalog.get_dataset_sync("bars.f", version)
        assert entry.quality_level is DataQuality.QUARANTINED
        assert PROBLEM_TAG in entry.tags
    assert catalog.lineage_sync("features.technical", "v1") == [DatasetRef("bars.f", "v3")]
    assert not [k for k in lake.list_keys("datasets/bars.orphan/") if "0123456789ab" in k]
    assert len(lake.read_dataset("bars.f", version="v1")) == len(bars(seed=9))  # the differing data is kept


def test_fsck_command_exit_codes_on_disk(tmp_path: Path, database: Database, catalog: DataCatalog) -> None:
    lake = LocalFileStorage(tmp_path / "lake")
    make_every_problem(lake, catalog)
    runner = CliRunner()
    where = ["--lake", lake.url, "--catalog", database.url, "--workdir", str(tmp_path / "w")]

    def fsck_command(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["-q", "data", "fsck", *args, *where], catch_exceptions=False)
        return result.exit_code, result.output

    try:
        code, out = fsck_command()
        assert code == 1, out
        for kind in ("orphan", "missing-data", "mismatch", "dead-attempt"):
            assert kind in out
        assert "5 remaining" in out
        assert "--repair" in out
        code, out = fsck_command("--repair", "--orphan-grace-minutes", "0")
        assert code == 0, out
        assert "registered as raw_market_data" in out
        assert "catalog entry removed" in out
        assert "quarantined" in out
        code, out = fsck_command()
        assert code == 0, out
        assert "0 problem(s)" in out
        assert "2 already quarantined" in out
        assert database.postgres.password not in out
    finally:
        structlog.reset_defaults()


def test_fsck_leaves_a_young_orphan_to_its_writer(lake: DataLakeStorage, catalog: DataCatalog) -> None:
    lake.write_dataset("bars.young", bars(), version="v1")
    report = fsck.check(lake, catalog)
    fsck.repair(lake, catalog, report)
    assert kinds(report) == [("orphan", "bars.young", "v1")]
    assert "less than" in (report.findings[0].repair or "")
    with pytest.raises(DatasetNotRegistered):
        catalog.get_dataset_sync("bars.young", "v1")
