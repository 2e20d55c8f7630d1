"""Bars over Kafka: a producer helper, and a consumer landing micro-batches in the lake at least once, never twice.

Messages: key = symbol (so one symbol's bars stay in one partition, in order), value = one JSON object
``{"timestamp": <epoch ns>, "symbol": ..., "open": ..., "high": ..., "low": ..., "close": ..., "volume": ...}``.

:class:`KafkaBarIngestor` guarantees "no lost bars after a crash, no duplicate bars after a replay":

* offsets are committed (synchronously, ``enable.auto.commit=False``) only after the batch is a committed
  lake version, so a crash re-delivers everything not yet durable (at least once);
* each batch of one partition becomes dataset version ``p<partition>-o<first offset>-<last offset>`` with
  the offsets in the manifest ``extra``; on every partition assignment the ingestor reads which offsets
  the lake already holds (from the version names, including quarantined ranges) and skips them, so a
  restart with different batch boundaries, a group reset to earliest or a new group never writes a bar twice;
* :func:`read_ingested` unions the versions and drops repeated (symbol, timestamp) bars as a last line
  of defence (e.g. a producer that published the same bar twice), keeping the lowest offset.

Run it as a process with ``qframe data stream --bootstrap HOST:PORT --topic T --group G --lake file:///...
--catalog sqlite:///... --max-idle-seconds 10`` (``qframe data stream --help`` lists every option).

Authentication: both ends log in with the ``auth`` settings they are given, by default the
``QFRAME_KAFKA_USERNAME`` / ``QFRAME_KAFKA_PASSWORD`` (SASL/SCRAM-SHA-512 unless
``QFRAME_KAFKA_SASL_MECHANISM`` says otherwise) of :class:`~qframe.research.settings.ResearchSettings`;
the platform's brokers refuse anonymous clients, and their ACLs let the ``ingestion`` user write the
market-data topics and the ``research`` user read them with consumer groups named ``research...``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from qframe.research.data_lake.catalog import DataCatalog, DataQuality, DatasetRef, DatasetType
from qframe.research.data_lake.ingestion import QUARANTINE_PREFIX, DataIngestionPipeline
from qframe.research.data_lake.storage import DataLakeStorage, DatasetVersionExists
from qframe.research.data_lake.storage_layout import StorageMetadata, TimestampLike, check_dataset_name
from qframe.research.data_lake.validation import NUMERIC_COLUMNS, REQUIRED_COLUMNS, validate_market_data
from qframe.research.settings import ResearchSettings

log = structlog.get_logger(__name__)

VERSION_RE: Final = re.compile(r"^p(\d+)-o(\d+)-(\d+)$")
_QUARANTINE_KEY_RE: Final = re.compile(r"/(p\d+-o\d+-\d+)\.parquet$")
DEFAULT_BATCH_SIZE: Final = 5000
DEFAULT_BATCH_TIMEOUT_S: Final = 2.0
_PRODUCE_RETRY_POLL_S: Final = 0.1


class KafkaIngestError(RuntimeError):
    """Publishing or consuming bars failed; the message says what the broker or the data reported."""


# --- encoding ---------------------------------------------------------------------------------------


def encode_bars(bars: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs for ``bars``: key the symbol, value a JSON bar with an epoch-nanosecond timestamp."""
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise KafkaIngestError(f"bars lack column(s) {missing}; publish frames with {list(REQUIRED_COLUMNS)}")
    stamps = pd.DatetimeIndex(bars["timestamp"]).tz_convert("UTC").as_unit("ns").asi8.tolist()
    symbols = bars["symbol"].astype(str).tolist()
    numbers = [bars[c].to_numpy(dtype=np.float64).tolist() for c in NUMERIC_COLUMNS]
    pairs = []
    for i, (stamp, symbol) in enumerate(zip(stamps, symbols, strict=True)):
        body: dict[str, Any] = {"timestamp": stamp, "symbol": symbol}
        body.update({c: numbers[j][i] for j, c in enumerate(NUMERIC_COLUMNS)})
        pairs.append((symbol.encode(), json.dumps(body, separators=(",", ":")).encode()))
    return pairs


def decode_bars(values: Sequence[bytes]) -> pd.DataFrame:
    """The bars frame for JSON message values (inverse of :func:`encode_bars`)."""
    records = [json.loads(value) for value in values]
    columns: dict[str, Any] = {}
    try:
        columns["timestamp"] = pd.to_datetime([r["timestamp"] for r in records], unit="ns", utc=True).as_unit("ns")
        columns["symbol"] = pd.array([str(r["symbol"]) for r in records], dtype="str")
        for c in NUMERIC_COLUMNS:
            columns[c] = np.array([_number(r.get(c)) for r in records], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise KafkaIngestError(
            f"a message is not a bar ({exc!r}); expected JSON with {list(REQUIRED_COLUMNS)}"
        ) from exc
    return pd.DataFrame(columns)


class _LoginWatch:
    """An ``error_cb`` remembering the broker's refusal of our login: librdkafka would otherwise retry it
    silently forever, so a wrong password looked like an idle topic."""

    def __init__(self) -> None:
        self.refused: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            self.refused = error

    def raise_if_refused(self, user: object) -> None:
        if self.refused is not None:
            raise KafkaIngestError(
                f"Kafka refused the login of user {user!r}: {self.refused.str()}; check QFRAME_KAFKA_USERNAME, "
                "QFRAME_KAFKA_PASSWORD and QFRAME_KAFKA_SASL_MECHANISM (the platform's Secret kafka-<consumer>)"
            )


def client_auth(auth: Mapping[str, str] | None) -> dict[str, str]:
    """The security settings of a client: ``auth`` as given, or the ``QFRAME_KAFKA_*`` environment's when None."""
    return dict(auth) if auth is not None else ResearchSettings.from_env().kafka_client_config()


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # validation reports the row


# --- producer ---------------------------------------------------------------------------------------


def publish_bars(
    bootstrap_servers: str,
    topic: str,
    bars: pd.DataFrame,
    *,
    validate: bool = True,
    producer_config: Mapping[str, Any] | None = None,
    flush_timeout_s: float = 60.0,
    auth: Mapping[str, str] | None = None,
) -> int:
    """Publishes every bar (idempotent producer, acks=all), waits for delivery and returns how many were delivered.

    ``auth`` holds the librdkafka security settings (see :func:`client_auth`; default: from the environment).

    Raises :class:`KafkaIngestError` listing the first delivery errors if any message was not delivered,
    and refuses invalid bars (``validate=False`` lets a test publish bad data on purpose).
    """
    if validate:
        validate_market_data(bars).raise_if_invalid()
    messages = encode_bars(bars)
    config = {
        **client_auth(auth),
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "lz4",
        **dict(producer_config or {}),
    }
    login = _LoginWatch()
    config.setdefault("error_cb", login)
    producer = Producer(config)
    errors: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1
        else:
            errors.append(str(err))

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry this message
                producer.poll(_PRODUCE_RETRY_POLL_S)
                login.raise_if_refused(config.get("sasl.username"))
        producer.poll(0)
    deadline = time.monotonic() + flush_timeout_s
    remaining = len(producer)
    while remaining and time.monotonic() < deadline:
        try:
            remaining = producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        except (KafkaException, SystemError) as exc:  # fatal, e.g. the broker's ACLs refuse this user any write
            # A fatal error raised while a delivery callback runs surfaces as SystemError caused by it.
            cause = exc if isinstance(exc, KafkaException) else exc.__cause__
            if not isinstance(cause, KafkaException):
                raise
            raise KafkaIngestError(f"Kafka refused publishing to {topic!r}: {cause.args[0].str()}") from exc
        login.raise_if_refused(config.get("sasl.username"))
    if errors or remaining:
        raise KafkaIngestError(
            f"published {delivered} of {len(messages)} bars to {topic!r}: {len(errors)} delivery error(s), "
            f"{remaining} still queued after {flush_timeout_s}s; first errors: {errors[:5]}"
        )
    log.info("kafka.published", topic=topic, bars=delivered)
    return delivered


# --- consumer ---------------------------------------------------------------------------------------


def version_for(partition: int, first_offset: int, last_offset: int) -> str:
    """Dataset version holding offsets ``first_offset..last_offset`` (inclusive) of one partition."""
    return f"p{partition}-o{first_offset}-{last_offset}"


def parse_version(version: str) -> tuple[int, int, int] | None:
    """(partition, first offset, last offset) of a stream version name, None for other names."""
    match = VERSION_RE.match(version)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def stored_offsets(storage: DataLakeStorage, dataset: str) -> dict[int, int]:
    """Per partition, the highest offset the lake holds for ``dataset`` (as data or as quarantined rows)."""
    names = list(storage.list_versions(dataset))
    for key in storage.list_keys(f"{QUARANTINE_PREFIX}/{dataset}/"):
        match = _QUARANTINE_KEY_RE.search(key)
        if match:
            names.append(match[1])
    highest: dict[int, int] = {}
    for name in names:
        parsed = parse_version(name)
        if parsed is not None:
            partition, _, last = parsed
            highest[partition] = max(highest.get(partition, -1), last)
    return highest


def _record(message: Message) -> _Record:
    partition, offset, value = message.partition(), message.offset(), message.value()
    if partition is None or offset is None:
        raise KafkaIngestError(f"the broker returned a message without partition/offset: {message!r}")
    return _Record(partition, offset, value or b"")


def default_dataset(topic: str) -> str:
    """``stream.<topic>`` with characters a dataset name cannot hold replaced by '-'."""
    cleaned = re.sub(r"[^a-z0-9_.-]", "-", topic.lower()).strip("-.") or "topic"
    return check_dataset_name(f"stream.{cleaned}"[:128])


@dataclass(frozen=True)
class _Record:
    partition: int
    offset: int
    value: bytes


@dataclass
class IngestStats:
    """Counters of one :meth:`KafkaBarIngestor.run`."""

    messages: int = 0
    batches: int = 0
    versions_written: int = 0
    bars_written: int = 0
    bars_quarantined: int = 0
    skipped_already_stored: int = 0
    duplicates_dropped: int = 0
    commit_failures: int = 0
    seconds: float = 0.0
    committed: dict[int, int] = field(default_factory=dict)


class KafkaBarIngestor:
    """Consumes bars from ``topic`` in micro-batches and writes each partition's batch as one lake version.

    ``auth`` holds the librdkafka security settings (default: the ``QFRAME_KAFKA_*`` environment's); a refused
    login stops :meth:`run` with :class:`KafkaIngestError` instead of waiting forever.

    ``quarantine=True`` (the default for a stream, which cannot send a batch back) sets invalid bars aside
    and moves on; with ``quarantine=False`` an invalid batch stops the ingestor before its offsets are
    committed, so nothing is lost while someone looks at it.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        storage: DataLakeStorage,
        catalog: DataCatalog | None = None,
        *,
        group_id: str,
        dataset: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
        quarantine: bool = True,
        consumer_config: Mapping[str, Any] | None = None,
        assignment_timeout_s: float = 120.0,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not batch_timeout_s > 0:
            raise ValueError(f"batch_timeout_s must be > 0, got {batch_timeout_s}")
        if not group_id:
            raise ValueError("group_id is required: the consumer group's committed offsets are the restart point")
        self.topic = topic
        self.storage = storage
        self.catalog = catalog
        self.group_id = group_id
        self.dataset = check_dataset_name(dataset) if dataset else default_dataset(topic)
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self._pipeline = DataIngestionPipeline(storage, catalog, quarantine=quarantine)
        self._config = {
            **client_auth(auth),
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **dict(consumer_config or {}),
        }
        self._login = _LoginWatch()
        self._config.setdefault("error_cb", self._login)
        self.assignment_timeout_s = assignment_timeout_s
        self._assigned_at: float | None = None
        self._pending: list[_Record] = []
        self._stored: dict[int, int] = {}
        self._stored_lock = threading.Lock()

    def run(
        self,
        *,
        max_idle_seconds: float | None = None,
        max_batches: int | None = None,
        stop: threading.Event | None = None,
        on_batch: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        """Consumes until ``stop`` is set, ``max_batches`` are done or ``max_idle_seconds`` pass without a message.

        ``on_batch`` sees the running counters after every batch whose offsets were handled (e.g. a progress line).
        """
        stats = IngestStats()
        began = last_message = time.monotonic()
        self._assigned_at = None
        consumer = Consumer(self._config)
        try:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            while not (stop is not None and stop.is_set()):
                batch = self._collect(consumer, stop)
                if batch:
                    last_message = time.monotonic()
                    self._flush(consumer, batch, stats)
                    if on_batch is not None:
                        on_batch(stats)
                    if max_batches is not None and stats.batches >= max_batches:
                        break
                elif max_idle_seconds is not None and self._idle_for(last_message, began) >= max_idle_seconds:
                    break
        finally:
            consumer.close()
            stats.seconds = time.monotonic() - began
        log.info(
            "kafka.ingest_stopped",
            topic=self.topic,
            dataset=self.dataset,
            messages=stats.messages,
            versions=stats.versions_written,
            bars=stats.bars_written,
            skipped=stats.skipped_already_stored,
        )
        return stats

    def _idle_for(self, last_message: float, began: float) -> float:
        """Seconds without a message, counted from the first assignment: joining a group where a killed member
        still holds partitions takes up to its session timeout, which is not idleness. Before any assignment,
        ``assignment_timeout_s`` more seconds are allowed."""
        now = time.monotonic()
        if self._assigned_at is None:
            return now - began - self.assignment_timeout_s
        return now - max(last_message, self._assigned_at)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned_at = time.monotonic()
        # Another member (or a killed run of this one) may have written versions since we last looked.
        with self._stored_lock:
            self._stored = stored_offsets(self.storage, self.dataset)
        self._register_missing()
        log.info("kafka.assigned", partitions=[p.partition for p in partitions], stored=self._stored)

    def _register_missing(self) -> None:
        """Registers lake versions the catalog lacks: a crash between the lake commit and the registration."""
        if self.catalog is None:
            return
        registered = set(self.catalog.list_versions_sync(self.dataset))
        for version in self.storage.list_versions(self.dataset):
            if version not in registered and parse_version(version) is not None:
                self.catalog.register_manifest_sync(
                    self.storage.manifest(self.dataset, version),
                    dataset_type=DatasetType.RAW_MARKET_DATA,
                    quality_level=DataQuality.VALIDATED,
                    tags=self._tags(version),
                    description=f"bars from Kafka topic {self.topic} (registered on recovery)",
                )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Bars of a partition we no longer own are the new owner's to write; writing them too would only
        # create overlapping versions (harmless after dedupe, but wasteful).
        revoked = {p.partition for p in partitions}
        self._pending[:] = [r for r in self._pending if r.partition not in revoked]
        log.info("kafka.revoked", partitions=sorted(revoked))

    def _collect(self, consumer: Consumer, stop: threading.Event | None) -> list[_Record]:
        batch = self._pending = []
        deadline = time.monotonic() + self.batch_timeout_s
        while len(batch) < self.batch_size and not (stop is not None and stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._login.raise_if_refused(self._config.get("sasl.username"))
            for message in consumer.consume(num_messages=self.batch_size - len(batch), timeout=min(remaining, 0.5)):
                error = message.error()
                if error is None:
                    batch.append(_record(message))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
        return batch

    def _flush(self, consumer: Consumer, batch: list[_Record], stats: IngestStats) -> None:
        stats.messages += len(batch)
        stats.batches += 1
        by_partition: dict[int, list[_Record]] = {}
        for record in batch:
            by_partition.setdefault(record.partition, []).append(record)
        commits: list[TopicPartition] = []
        for partition, messages in sorted(by_partition.items()):
            messages.sort(key=lambda m: m.offset)
            with self._stored_lock:
                already = self._stored.get(partition, -1)
            fresh = [m for m in messages if m.offset > already]
            stats.skipped_already_stored += len(messages) - len(fresh)
            if fresh:
                self._write_partition_batch(partition, fresh, stats)
            commits.append(TopicPartition(self.topic, partition, messages[-1].offset + 1))
        # Only now is every bar of the batch durable in the lake: the restart point may move past it.
        try:
            consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:
            # The bars are durable and the next owner skips what the lake holds, so nothing is lost or doubled;
            # typically a rebalance took the partitions away while the batch was being written.
            stats.commit_failures += 1
            log.warning("kafka.commit_failed", error=str(exc), offsets={tp.partition: tp.offset for tp in commits})
            return
        for tp in commits:
            stats.committed[tp.partition] = tp.offset

    def _write_partition_batch(self, partition: int, messages: list[_Record], stats: IngestStats) -> None:
        first, last = messages[0].offset, messages[-1].offset
        version = version_for(partition, first, last)
        frame = decode_bars([m.value for m in messages])
        repeated = frame.duplicated(["symbol", "timestamp"], keep="first").to_numpy()
        if repeated.any():
            stats.duplicates_dropped += int(repeated.sum())
            frame = frame[~repeated]
        extra = {
            "kafka.topic": self.topic,
            "kafka.partition": str(partition),
            "kafka.first_offset": str(first),
            "kafka.last_offset": str(last),
            "kafka.group": self.group_id,
        }
        try:
            result = self._pipeline.ingest_frame_detailed_sync(
                frame,
                name=self.dataset,
                version=version,
                tags=self._tags(version),
                description=f"bars from Kafka topic {self.topic}, partition {partition}, offsets {first}-{last}",
                extra=extra,
            )
        except DatasetVersionExists:
            # The same range was written by an earlier run that died before committing: already durable.
            stats.skipped_already_stored += len(messages)
        else:
            stats.versions_written += 1
            stats.bars_written += 0 if result.manifest is None else result.manifest.row_count
            stats.bars_quarantined += result.report.n_invalid
        with self._stored_lock:
            self._stored[partition] = max(self._stored.get(partition, -1), last)

    def _tags(self, version: str) -> dict[str, str]:
        parsed = parse_version(version)
        partition = "" if parsed is None else str(parsed[0])
        return {"source": "kafka", "topic": self.topic, "partition": partition, "group": self.group_id}


# --- reading what was ingested ----------------------------------------------------------------------


def read_ingested(
    storage: DataLakeStorage,
    dataset: str,
    *,
    symbols: Sequence[str] | None = None,
    start: TimestampLike | None = None,
    end: TimestampLike | None = None,
    dedupe: bool = True,
) -> pd.DataFrame:
    """Every bar of every stream version of ``dataset``, one row per (symbol, timestamp), sorted.

    A bar stored more than once (overlapping ranges, a bar published twice) keeps its lowest-offset copy.
    ``dedupe=False`` returns the raw union, which is how tests prove the sink wrote nothing twice.
    """
    versions = sorted(
        (parsed, name) for name in storage.list_versions(dataset) if (parsed := parse_version(name)) is not None
    )
    frames = [
        storage.read_dataset(dataset, version=name, symbols=symbols, start=start, end=end) for _, name in versions
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in REQUIRED_COLUMNS})
    union = pd.concat(frames, ignore_index=True)
    if dedupe:
        union = union.drop_duplicates(["symbol", "timestamp"], keep="first")
    return union.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)


def compact_ingested(
    storage: DataLakeStorage,
    dataset: str,
    *,
    target: str,
    version: str,
    catalog: DataCatalog | None = None,
) -> StorageMetadata:
    """Writes the deduplicated union of ``dataset``'s stream versions as one version of ``target``.

    Registered (with lineage to every source version) when a catalog is given.
    """
    bars = read_ingested(storage, dataset)
    manifest = storage.write_dataset(target, bars, version=version, extra={"compacted_from": dataset})
    if catalog is not None:
        sources = [DatasetRef(dataset, v) for v in storage.list_versions(dataset) if parse_version(v) is not None]
        registered = set(catalog.list_versions_sync(dataset))
        catalog.register_manifest_sync(
            manifest,
            dataset_type=DatasetType.RAW_MARKET_DATA,
            quality_level=DataQuality.CURATED,
            tags={"source": "kafka", "compacted_from": dataset},
            description=f"deduplicated bars of {dataset}",
            derived_from=[ref for ref in sources if ref.version in registered],
        )
    return manifest


def _dtype(column: str) -> str:
    if column == "timestamp":
        return "datetime64[ns, UTC]"
    return "str" if column == "symbol" else "float64"


def offsets_summary(stats: IngestStats) -> str:
    """``p0->120, p1->98``: the restart point this run committed for each partition it handled."""
    return ", ".join(f"p{p}->{o}" for p, o in sorted(stats.committed.items()))
