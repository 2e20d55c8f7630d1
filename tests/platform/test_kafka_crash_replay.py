"""Kafka → lake against a real broker: SIGKILL the consumer mid-stream, restart, replay; no bar lost, none doubled."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from qframe.research.data_lake.catalog import DataCatalog, DataQuality
from qframe.research.data_lake.ingestion import bars_checksum, quarantine_name, read_quarantine
from qframe.research.data_lake.kafka_stream import (
    IngestStats,
    KafkaBarIngestor,
    KafkaIngestError,
    parse_version,
    publish_bars,
    read_ingested,
)
from qframe.research.data_lake.storage import LocalFileStorage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import MarketDataValidationError

from tools.services import KafkaService

pytestmark = pytest.mark.services

N_SYMBOLS = 5
PERIODS = 4000  # 20,000 bars
PARTITIONS = 4
PROCESS_TIMEOUT_S = 240.0


def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"bars-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=60)
    return topic


def _high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def _consumer_process(kafka: KafkaService, topic: str, lake: Path, catalog_url: str, group: str, *, batch: int,
                      idle_s: float, log_path: Path) -> subprocess.Popen[bytes]:  # fmt: skip
    # The `qframe` console script of this environment, exactly as an operator runs the consumer.
    qframe = Path(sys.executable).with_name("qframe")
    assert qframe.is_file(), f"{qframe} is missing: install the platform package into this environment (make setup)"
    command = [
        str(qframe), "data", "stream",
        "--bootstrap", kafka.bootstrap_servers, "--topic", topic, "--lake", lake.as_uri(),
        "--catalog", catalog_url, "--workdir", str(lake.parent), "--group", group, "--batch-size", str(batch),
        "--batch-timeout", "0.5", "--max-idle-seconds", str(idle_s), "--session-timeout-ms", "6000",
    ]  # fmt: skip
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def _manifests(lake: Path, dataset: str) -> int:
    return len(list((lake / "datasets" / dataset).glob("*/_manifest.json")))


@dataclass(frozen=True)
class CrashRun:
    kafka: KafkaService
    topic: str
    group: str
    dataset: str
    lake: Path
    catalog_url: str
    published: pd.DataFrame
    bars_at_kill: int
    committed_at_kill: dict[int, int]
    versions_at_kill: int
    restart_log: str


@pytest.fixture(scope="module")
def crash_run(kafka: KafkaService, tmp_path_factory: pytest.TempPathFactory) -> CrashRun:
    work = tmp_path_factory.mktemp("kafka-crash")
    lake, log_path = work / "lake", work / "consumer.log"
    catalog_url = f"sqlite:///{work / 'catalog.db'}"
    DataCatalog(catalog_url).close()  # migrate once, before two processes race to do it
    topic = _create_topic(kafka.bootstrap_servers, PARTITIONS)
    group, dataset = f"lake-{topic}", f"stream.{topic}"
    symbols = [f"SYM{i}" for i in range(N_SYMBOLS)]
    published = generate_market_data(symbols, periods=PERIODS, freq="1min", seed=42)
    assert publish_bars(kafka.bootstrap_servers, topic, published) == len(published)

    first = _consumer_process(kafka, topic, lake, catalog_url, group, batch=400, idle_s=30, log_path=log_path)
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while _manifests(lake, dataset) < 6:
            assert first.poll() is None, f"consumer exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"consumer wrote nothing in time:\n{log_path.read_text()}"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    storage = LocalFileStorage(lake)
    bars_at_kill = len(read_ingested(storage, dataset, dedupe=False))
    committed_at_kill = _committed(kafka.bootstrap_servers, group, topic, PARTITIONS)
    versions_at_kill = _manifests(lake, dataset)

    # Different batch size after the restart: batch boundaries no longer match the versions already written.
    second = _consumer_process(kafka, topic, lake, catalog_url, group, batch=700, idle_s=6, log_path=log_path)
    try:
        assert second.wait(timeout=PROCESS_TIMEOUT_S) == 0, log_path.read_text()
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(timeout=30)
    return CrashRun(
        kafka, topic, group, dataset, lake, catalog_url, published, bars_at_kill, committed_at_kill,
        versions_at_kill, log_path.read_text(),
    )  # fmt: skip


def test_the_consumer_was_killed_mid_stream_after_committing_some_batches(crash_run: CrashRun) -> None:
    total = len(crash_run.published)
    assert 0 < crash_run.bars_at_kill < total
    committed = sum(max(offset, 0) for offset in crash_run.committed_at_kill.values())
    assert 0 < committed < total
    # Some bars were durable in the lake but not yet committed, or not: either way the lake is ahead of or equal
    # to the committed offsets, never behind (offsets are committed only after the write).
    assert crash_run.bars_at_kill >= committed


def test_after_restart_every_bar_is_in_the_lake_exactly_once(crash_run: CrashRun) -> None:
    storage = LocalFileStorage(crash_run.lake)
    raw = read_ingested(storage, crash_run.dataset, dedupe=False)
    assert len(raw) == len(crash_run.published)
    assert not raw.duplicated(["symbol", "timestamp"]).any()
    assert bars_checksum(raw) == bars_checksum(crash_run.published)
    deduped = read_ingested(storage, crash_run.dataset)
    pd.testing.assert_frame_equal(
        deduped[["timestamp", "symbol", "open", "high", "low", "close", "volume"]],
        crash_run.published.reset_index(drop=True),
        check_exact=True,
    )


def test_committed_offsets_reach_the_end_of_every_partition(crash_run: CrashRun) -> None:
    ends = _high_watermarks(crash_run.kafka.bootstrap_servers, crash_run.topic, PARTITIONS)
    committed = _committed(crash_run.kafka.bootstrap_servers, crash_run.group, crash_run.topic, PARTITIONS)
    assert sum(ends.values()) == len(crash_run.published)
    for partition, end in ends.items():
        if end > 0:
            assert committed[partition] == end


def test_versions_cover_disjoint_offset_ranges_recorded_in_their_manifests(crash_run: CrashRun) -> None:
    storage = LocalFileStorage(crash_run.lake)
    versions = storage.list_versions(crash_run.dataset)
    assert len(versions) > crash_run.versions_at_kill
    ranges: dict[int, list[tuple[int, int]]] = {}
    for version in versions:
        parsed = parse_version(version)
        assert parsed is not None
        partition, first, last = parsed
        extra = storage.manifest(crash_run.dataset, version).extra
        assert extra["kafka.partition"] == str(partition)
        assert (extra["kafka.first_offset"], extra["kafka.last_offset"]) == (str(first), str(last))
        assert extra["kafka.topic"] == crash_run.topic
        ranges.setdefault(partition, []).append((first, last))
    ends = _high_watermarks(crash_run.kafka.bootstrap_servers, crash_run.topic, PARTITIONS)
    for partition, spans in ranges.items():
        spans.sort()
        assert spans[0][0] == 0
        for (_, last), (first, _) in itertools.pairwise(spans):
            assert first == last + 1, f"partition {partition}: gap or overlap in {spans}"
        assert spans[-1][1] == ends[partition] - 1


def test_the_restarted_consumer_reports_what_it_ingested(crash_run: CrashRun) -> None:
    summary = [line for line in crash_run.restart_log.splitlines() if line.startswith("ingested ")]
    assert len(summary) == 1, crash_run.restart_log  # the killed run never got to print one
    assert f"into {crash_run.dataset}" in summary[0]
    assert "committed p" in summary[0]


def test_every_lake_version_is_registered_in_the_catalog(crash_run: CrashRun) -> None:
    storage = LocalFileStorage(crash_run.lake)
    with DataCatalog(crash_run.catalog_url) as catalog:
        registered = catalog.list_versions_sync(crash_run.dataset)
        assert sorted(registered) == sorted(storage.list_versions(crash_run.dataset))
        entry = catalog.get_dataset_sync(crash_run.dataset, registered[-1])
        assert entry.quality_level == DataQuality.VALIDATED
        assert entry.tags["source"] == "kafka"
        assert entry.checksum == storage.manifest(crash_run.dataset, registered[-1]).checksum


def test_replay_with_a_new_group_writes_nothing_new(crash_run: CrashRun) -> None:
    storage = LocalFileStorage(crash_run.lake)
    before = storage.list_versions(crash_run.dataset)
    ingestor = KafkaBarIngestor(
        crash_run.kafka.bootstrap_servers, crash_run.topic, storage, group_id=f"replay-{uuid.uuid4().hex[:6]}",
        dataset=crash_run.dataset, batch_size=900, batch_timeout_s=0.5,
    )  # fmt: skip
    stats = ingestor.run(max_idle_seconds=6)
    assert stats.messages == len(crash_run.published)
    assert stats.skipped_already_stored == len(crash_run.published)
    assert stats.versions_written == 0
    assert storage.list_versions(crash_run.dataset) == before
    assert len(read_ingested(storage, crash_run.dataset, dedupe=False)) == len(crash_run.published)


def test_replay_after_resetting_the_group_to_earliest_writes_nothing_new(crash_run: CrashRun) -> None:
    admin = AdminClient({"bootstrap.servers": crash_run.kafka.bootstrap_servers})
    reset = [TopicPartition(crash_run.topic, p, 0) for p in range(PARTITIONS)]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(crash_run.group, reset)])
    for future in futures.values():
        future.result(timeout=60)
    assert set(
        _committed(crash_run.kafka.bootstrap_servers, crash_run.group, crash_run.topic, PARTITIONS).values()
    ) == {0}
    storage = LocalFileStorage(crash_run.lake)
    with DataCatalog(crash_run.catalog_url) as catalog:
        ingestor = KafkaBarIngestor(
            crash_run.kafka.bootstrap_servers, crash_run.topic, storage, catalog, group_id=crash_run.group,
            dataset=crash_run.dataset, batch_size=333, batch_timeout_s=0.5,
        )  # fmt: skip
        stats = ingestor.run(max_idle_seconds=6)
    assert stats.versions_written == 0
    assert stats.skipped_already_stored == len(crash_run.published)
    raw = read_ingested(storage, crash_run.dataset, dedupe=False)
    assert len(raw) == len(crash_run.published)
    assert bars_checksum(raw) == bars_checksum(crash_run.published)


def test_bad_and_repeated_bars_are_quarantined_or_deduplicated(kafka: KafkaService, tmp_path: Path) -> None:
    topic = _create_topic(kafka.bootstrap_servers, 2)
    good = generate_market_data(["AAA", "BBB"], periods=300, freq="1h", seed=5)
    bad = good.iloc[[10, 320]].copy()
    bad["high"] = bad["low"] / 2  # high below low: invalid
    bad["timestamp"] = bad["timestamp"] + pd.Timedelta(minutes=30)  # new instants, in order within their symbol
    echo = good.iloc[[7]]  # the same bar twice in one batch
    stream = pd.concat([good.iloc[:11], bad.iloc[[0]], good.iloc[11:30], echo, good.iloc[30:321], bad.iloc[[1]],
                        good.iloc[321:]])  # fmt: skip
    assert publish_bars(kafka.bootstrap_servers, topic, stream, validate=False) == len(stream)

    storage = LocalFileStorage(tmp_path / "lake")
    with DataCatalog(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:

        def ingest() -> IngestStats:
            ingestor = KafkaBarIngestor(
                kafka.bootstrap_servers, topic, storage, catalog, group_id="quarantine-test", batch_size=5000,
                dataset="stream.quarantine-test",
            )  # fmt: skip
            return ingestor.run(max_idle_seconds=4)

        stats = ingest()
        assert stats.bars_quarantined == 2
        assert stats.duplicates_dropped == 1
        assert stats.bars_written == len(good)
        quarantined = catalog.search_sync(name_prefix=quarantine_name("stream.quarantine-test"))
        assert {entry.quality_level for entry in quarantined} == {DataQuality.QUARANTINED}
        assert sum(entry.row_count for entry in quarantined) == 2
        rows = pd.concat([read_quarantine(storage, "stream.quarantine-test", e.version) for e in quarantined])
        assert set(rows["_reasons"]) == {"high_below_open_close"}  # low was left valid
        assert sorted(rows["high"]) == sorted(bad["high"])

        # The producer re-publishes two bars later on: they arrive in a new batch and a new version.
        assert publish_bars(kafka.bootstrap_servers, topic, good.iloc[[5, 400]]) == 2
        assert ingest().bars_written == 2
    raw = read_ingested(storage, "stream.quarantine-test", dedupe=False)
    assert len(raw) == len(good) + 2
    clean = read_ingested(storage, "stream.quarantine-test")
    assert len(clean) == len(good)
    assert bars_checksum(clean) == bars_checksum(good)


def test_without_quarantine_an_invalid_batch_stops_the_ingestor_before_anything_is_committed(
    kafka: KafkaService, tmp_path: Path
) -> None:
    topic = _create_topic(kafka.bootstrap_servers, 1)
    bars = generate_market_data(["AAA"], periods=50, freq="1h", seed=6)
    bars.loc[20, "volume"] = -1.0
    assert publish_bars(kafka.bootstrap_servers, topic, bars, validate=False) == len(bars)
    storage = LocalFileStorage(tmp_path / "lake")
    ingestor = KafkaBarIngestor(
        kafka.bootstrap_servers, topic, storage, group_id="strict", quarantine=False, batch_size=100
    )
    with pytest.raises(MarketDataValidationError, match=r"volume_invalid \(1 rows\)"):
        ingestor.run(max_idle_seconds=5)
    assert storage.list_keys("") == []
    assert _committed(kafka.bootstrap_servers, "strict", topic, 1)[0] < 0  # no offset committed for the group


def test_publish_raises_when_bars_cannot_be_delivered() -> None:
    # A closed loopback port: librdkafka retries until message.timeout.ms, then reports each bar as failed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    bars = generate_market_data(["AAA"], periods=5, seed=1)
    with pytest.raises(KafkaIngestError, match=r"published 0 of 5 bars to 'nowhere': 5 delivery error\(s\)"):
        publish_bars(
            f"127.0.0.1:{closed_port}",
            "nowhere",
            bars,
            producer_config={"message.timeout.ms": 1500},
            flush_timeout_s=30,
        )


def test_publish_refuses_invalid_bars_before_connecting() -> None:
    bars = generate_market_data(["AAA"], periods=5, seed=1)
    bars.loc[2, "low"] = 0.0
    with pytest.raises(MarketDataValidationError, match="low_not_positive"):
        publish_bars("127.0.0.1:1", "never", bars)
