"""Ingestion against the real S3 API server (moto), PostgreSQL and Kafka: the lake a cluster would run on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import numpy as np
import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from qframe.research.data_lake.catalog import DataCatalog, DataQuality
from qframe.research.data_lake.ingestion import DataIngestionPipeline, bars_checksum, quarantine_name, read_quarantine
from qframe.research.data_lake.kafka_stream import KafkaBarIngestor, publish_bars, read_ingested
from qframe.research.data_lake.storage import S3Storage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import MarketDataValidationError

from tools.services import KafkaService, PostgresService, S3Service

pytestmark = pytest.mark.services


def _object_keys(s3: S3Service, bucket: str) -> list[str]:
    client = boto3.client("s3", **s3.boto3_kwargs())
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture
def bucket(s3: S3Service) -> str:
    name = f"ingest-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **s3.boto3_kwargs()).create_bucket(Bucket=name)
    return name


@pytest.fixture
def storage(s3: S3Service, bucket: str) -> S3Storage:
    return S3Storage(
        bucket,
        prefix="lake",
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        endpoint_url=s3.endpoint_url,
    )


@pytest.fixture
def catalog(postgres: PostgresService) -> Iterator[DataCatalog]:
    with DataCatalog(postgres.url) as cat:
        yield cat


def _name(kind: str) -> str:
    return f"bars.{kind}-{uuid.uuid4().hex[:8]}"


def test_synthetic_ingest_lands_in_s3_and_postgres(storage: S3Storage, catalog: DataCatalog) -> None:
    name = _name("synthetic")
    entry = DataIngestionPipeline(storage, catalog).ingest_market_data_sync(
        "synthetic", ["AAA", "BBB", "CCC"], "1h", "2024-01-01", periods=2000, name=name, version="v1", seed=8
    )
    assert entry.location.startswith(f"s3://{storage.bucket_name}/lake/")
    found = catalog.search_sync(tags={"source": "synthetic"}, symbol="BBB", name_prefix=name)
    assert [(e.name, e.version) for e in found] == [(name, "v1")]
    expected = generate_market_data(["AAA", "BBB", "CCC"], start="2024-01-01", periods=2000, freq="1h", seed=8)
    assert bars_checksum(storage.read_dataset(name)) == bars_checksum(expected)
    assert catalog.get_dataset_sync(name).checksum == storage.manifest(name).checksum


def test_a_rejected_batch_leaves_the_bucket_and_catalog_unchanged(
    s3: S3Service, bucket: str, storage: S3Storage, catalog: DataCatalog
) -> None:
    bars = generate_market_data(["AAA"], periods=500, seed=1)
    pipeline = DataIngestionPipeline(storage, catalog)
    pipeline.ingest_frame_sync(bars, name=_name("before"), version="v1")
    keys_before = _object_keys(s3, bucket)
    registered_before = catalog.count_sync()
    broken = bars.copy()
    broken.loc[100:104, "high"] = 0.0
    name = _name("rejected")
    with pytest.raises(MarketDataValidationError, match="high_below_open_close \\(5 rows\\)"):
        pipeline.ingest_frame_sync(broken, name=name, version="v1")
    assert _object_keys(s3, bucket) == keys_before
    assert catalog.count_sync() == registered_before
    assert catalog.list_versions_sync(name) == []


def test_quarantine_on_s3_and_postgres(storage: S3Storage, catalog: DataCatalog) -> None:
    bars = generate_market_data(["AAA", "BBB"], periods=300, seed=2)
    broken = bars.copy()
    broken.loc[[3, 310], "close"] = np.inf
    name = _name("quarantine")
    result = DataIngestionPipeline(storage, catalog, quarantine=True).ingest_frame_detailed_sync(
        broken, name=name, version="v1"
    )
    assert result.dataset is not None
    assert result.dataset.row_count == len(bars) - 2
    aside = read_quarantine(storage, name, "v1")
    assert aside["_row"].tolist() == [3, 310]
    assert set(aside["_reasons"]) == {"price_not_finite"}
    entry = catalog.get_dataset_sync(quarantine_name(name), "v1")
    assert entry.quality_level == DataQuality.QUARANTINED
    assert entry.location.startswith("s3://")
    assert bars_checksum(storage.read_dataset(name)) == bars_checksum(bars.drop(index=[3, 310]))


def test_kafka_stream_into_s3_and_postgres(kafka: KafkaService, storage: S3Storage, catalog: DataCatalog) -> None:
    topic = f"bars-s3-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=60)
    bars = generate_market_data(["AAA", "BBB", "CCC", "DDD"], periods=1500, freq="1min", seed=4)
    assert publish_bars(kafka.bootstrap_servers, topic, bars) == len(bars)
    ingestor = KafkaBarIngestor(
        kafka.bootstrap_servers, topic, storage, catalog, group_id=f"g-{topic}", batch_size=2000, batch_timeout_s=1.0
    )
    stats = ingestor.run(max_idle_seconds=5)
    assert stats.bars_written == len(bars)
    ingested = read_ingested(storage, ingestor.dataset, dedupe=False)
    assert not ingested.duplicated(["symbol", "timestamp"]).any()
    assert bars_checksum(ingested) == bars_checksum(bars)
    registered = catalog.list_versions_sync(ingestor.dataset)
    assert sorted(registered) == sorted(storage.list_versions(ingestor.dataset))
    assert pd.Series([catalog.get_dataset_sync(ingestor.dataset, v).row_count for v in registered]).sum() == len(bars)
