"""`qframe data ...`: put bars into the lake (files, synthetic, Kafka), look at what is there, derive features."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from qframe.research.cli._bars_file import (
    ColumnMap,
    FileSymbol,
    Separator,
    SourceTz,
    TimestampUnitOption,
    in_cli_words,
    read_bars,
    read_options,
)
from qframe.research.cli._common import (
    EXIT_FAILED,
    CatalogUrl,
    LakeUrl,
    Workdir,
    _bad_input_types,
    choice_error,
    console,
    err_console,
    fail,
    plain_errors,
    research_session,
)
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from qframe.research.data_lake.kafka_stream import IngestStats

app = typer.Typer(
    help="Datasets in the lake: generate, ingest, stream, validate, list, show, features.", no_args_is_help=True
)

# The consumer's own defaults (kafka_stream.DEFAULT_BATCH_*), spelled out so that `qframe --help` does not
# import confluent_kafka and pandas; a unit test keeps the two in step.
STREAM_BATCH_SIZE = 5000
STREAM_BATCH_TIMEOUT_S = 2.0
# Kafka's own rule for topic names, so a typo is refused here rather than by the broker after connecting.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _split_ref(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version or "latest"


def _parse_tags(tags: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            fail(f"tag {tag!r} is not key=value (e.g. --tag exchange=binance)")
        parsed[key] = value
    return parsed


@app.command()
def generate(
    symbols: Annotated[str, typer.Option(help="comma-separated symbols")] = "AAA,BBB,CCC",
    periods: Annotated[int, typer.Option(min=1, help="bars per symbol")] = 5000,
    timeframe: Annotated[str, typer.Option(help="bar size, e.g. 1m, 1h, 1d")] = "1h",
    start: Annotated[str, typer.Option(help="first bar (UTC)")] = "2024-01-01",
    seed: Annotated[int, typer.Option(min=0, help="same seed, same bars")] = 0,
    name: Annotated[str | None, typer.Option(help="dataset name (default bars.synthetic-<timeframe>)")] = None,
    version: Annotated[str | None, typer.Option(help="dataset version (default: UTC time now)")] = None,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Write deterministic synthetic bars (regime-switching) to the lake and the catalog."""
    from qframe.research.data_lake.ingestion import DataIngestionPipeline

    with research_session(workdir, lake, catalog) as session:
        stored = DataIngestionPipeline(session.storage, session.catalog).ingest_market_data_sync(
            "synthetic",
            [s.strip() for s in symbols.split(",") if s.strip()],
            timeframe,
            start,
            name=name,
            version=version,
            seed=seed,
            periods=periods,
        )
        console.print(f"wrote [bold]{stored.name}@{stored.version}[/]: {stored.row_count:,} bars -> {stored.location}")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="a .csv or .parquet file of OHLCV bars")],
    name: Annotated[str, typer.Option(help="dataset name, e.g. bars.binance-1h")],
    version: Annotated[str, typer.Option(help="dataset version, e.g. v1")],
    quarantine: Annotated[bool, typer.Option(help="write bad rows aside instead of refusing the file")] = False,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    column_map: ColumnMap = None,
    symbol: FileSymbol = None,
    timestamp_unit: TimestampUnitOption = None,
    sep: Separator = None,
    source_tz: SourceTz = "UTC",
    overwrite: Annotated[bool, typer.Option(help="replace an existing version (read its refusal first)")] = False,
    max_quarantine: Annotated[
        str, typer.Option(help="with --quarantine: refuse the file (nothing written) above this share of bad rows")
    ] = "1%",
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Validate a file of bars and write it to the lake as an immutable version."""
    from qframe.research.data_lake.ingestion import DataIngestionPipeline

    tags = _parse_tags(tag or [])
    options = read_options(column_map, symbol, timestamp_unit, sep, source_tz)
    limit = _share(max_quarantine)
    with research_session(workdir, lake, catalog) as session:
        pipeline = DataIngestionPipeline(session.storage, session.catalog, quarantine=quarantine)
        try:
            if quarantine:
                result = _ingest_with_quarantine(pipeline, path, name, version, tags, overwrite, options, limit)
                stored = result.stored
            else:
                stored = pipeline.ingest_file_sync(
                    path, name=name, version=version, tags=tags, overwrite=overwrite, **options
                )
        except Exception as exc:
            if isinstance(exc, _bad_input_types()):
                fail(in_cli_words(str(exc)))
            raise
        if stored is not None:
            console.print(
                f"wrote [bold]{stored.name}@{stored.version}[/]: {stored.row_count:,} bars -> {stored.location}"
            )


def _share(text: str) -> float:
    """``1%`` or ``0.01`` -> 0.01."""
    try:
        value = float(text.strip().removesuffix("%")) / (100.0 if text.strip().endswith("%") else 1.0)
    except ValueError:
        fail(f"--max-quarantine {text!r} is not a share: use e.g. 1% or 0.01")
    if not 0.0 <= value <= 1.0:
        fail(f"--max-quarantine {text!r} must be between 0% and 100%")
    return value


def _rule_lines(report: Any) -> list[str]:
    lines = [f"  {v.rule}: {v.count:,} rows ({v.description})" for v in report.violations]
    if {"timestamp_not_increasing", "timestamp_duplicate"} & set(report.rules_broken):
        lines.append(
            "  hint: rows out of time order or repeated: sort the file by symbol and timestamp (and drop exact "
            "duplicates) before ingesting, e.g. df.sort_values(['symbol', 'timestamp']).drop_duplicates()"
        )
    return lines


def _ingest_with_quarantine(
    pipeline: Any,
    path: Path,
    name: str,
    version: str,
    tags: dict[str, str],
    overwrite: bool,
    options: dict[str, Any],
    limit: float,
) -> Any:
    """Validate first: above ``limit`` bad rows nothing is written; else ingest and say what was set aside."""
    from qframe.research.data_lake.ingestion import normalise_bars, read_bars_file
    from qframe.research.data_lake.validation import validate_market_data

    read = dict(options)
    frame = read_bars_file(path, csv_options=read.pop("csv_options"))
    report = validate_market_data(normalise_bars(frame, **read))
    share = report.n_invalid / max(1, report.n_rows)
    if not report.schema_errors and share > limit:
        detail = "\n".join(_rule_lines(report))
        fail(
            f"{report.n_invalid:,} of {report.n_rows:,} rows ({share:.2%}) break the market-data rules, above "
            f"--max-quarantine {limit:.2%}; nothing was written. Per rule:\n{detail}",
            code=1,
        )
    file_tags = {"source": "file", "file": path.name, **tags}
    result = pipeline.ingest_frame_detailed_sync(
        frame, name=name, version=version, tags=file_tags, overwrite=overwrite, **read
    )
    if result.quarantine is not None:
        console.print(
            f"quarantined {result.quarantine.row_count:,} of {report.n_rows:,} rows ({share:.2%}) -> "
            f"{result.quarantine.location}",
            highlight=False,
            markup=False,
        )
        for line in _rule_lines(result.report):
            console.print(line, highlight=False, markup=False)
    return result


def _check_bootstrap(servers: str) -> str:
    for server in servers.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            fail(f"--bootstrap {servers!r}: {server.strip()!r} is not host:port (e.g. --bootstrap kafka:9092)")
    return ",".join(server.strip() for server in servers.split(","))


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C finish the batch in hand (written and committed) instead of abandoning it."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stream_progress(stats: IngestStats) -> str:
    return (
        f"{stats.bars_written:,} bars in {stats.versions_written} versions from {stats.messages:,} messages "
        f"({stats.skipped_already_stored:,} already stored, {stats.bars_quarantined:,} quarantined)"
    )


@app.command()
def stream(
    bootstrap: Annotated[
        str,
        typer.Option(
            envvar="QFRAME_KAFKA_BOOTSTRAP_SERVERS",
            help="Kafka bootstrap servers, host:port[,host:port]; the login comes from QFRAME_KAFKA_USERNAME "
            "and QFRAME_KAFKA_PASSWORD",
        ),
    ],
    topic: Annotated[str, typer.Option(help="topic of JSON bars keyed by symbol")],
    group: Annotated[str, typer.Option(help="consumer group id; its committed offsets are the restart point")],
    dataset: Annotated[str | None, typer.Option(help="dataset name (default stream.<topic>)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="most bars per micro-batch")] = STREAM_BATCH_SIZE,
    batch_timeout: Annotated[
        float, typer.Option(min=0.001, help="seconds to fill a batch before writing what arrived")
    ] = STREAM_BATCH_TIMEOUT_S,
    max_idle_seconds: Annotated[
        float | None,
        typer.Option(min=0, help="exit after this long without messages (default: run until SIGTERM or Ctrl-C)"),
    ] = None,
    session_timeout_ms: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="consumer session timeout; a killed member's partitions move after this long "
            "(librdkafka default 45000)",
        ),
    ] = None,
    quarantine: Annotated[
        bool, typer.Option(help="set invalid bars aside and go on; --no-quarantine stops on an invalid batch")
    ] = True,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="QFRAME_S3_ENDPOINT_URL", help="S3 API endpoint (MinIO, moto) for s3:// lakes"),
    ] = None,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Consume bars from a Kafka topic into the lake, one version per partition batch (at least once, no duplicates)."""
    servers = _check_bootstrap(bootstrap)
    if not _TOPIC_RE.match(topic) or topic in {".", ".."}:
        fail(f"--topic {topic!r}: Kafka topic names are 1-249 letters, digits, '.', '_' or '-'")
    from confluent_kafka import KafkaException
    from qframe.research.data_lake.kafka_stream import KafkaBarIngestor, KafkaIngestError, offsets_summary

    with research_session(workdir, lake, catalog, s3_endpoint_url=s3_endpoint_url) as session:
        ingestor = KafkaBarIngestor(
            servers,
            topic,
            session.storage,
            session.catalog,
            group_id=group,
            dataset=dataset,
            batch_size=batch_size,
            batch_timeout_s=batch_timeout,
            quarantine=quarantine,
            consumer_config=None if session_timeout_ms is None else {"session.timeout.ms": session_timeout_ms},
        )
        waiting = f"consuming [bold]{topic}[/] as group {escape(group)} into {ingestor.dataset}"
        with _stop_on_signals() as stop, err_console.status(f"{waiting}: waiting for bars") as status:

            def show(stats: IngestStats) -> None:
                status.update(f"{waiting}: {_stream_progress(stats)}")

            try:
                stats = ingestor.run(max_idle_seconds=max_idle_seconds, stop=stop, on_batch=show)
            except (KafkaException, KafkaIngestError) as exc:
                fail(f"Kafka {servers}, topic {topic!r}: {exc}", code=EXIT_FAILED)
        committed = offsets_summary(stats) or "nothing"
        console.print(
            f"ingested {_stream_progress(stats)} into [bold]{ingestor.dataset}[/] in {stats.seconds:.1f}s; "
            f"committed {committed}",
            highlight=False,
            soft_wrap=True,  # one line per run, however many partitions, for logs and greps
        )


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="a .csv or .parquet file of OHLCV bars")],
    column_map: ColumnMap = None,
    symbol: FileSymbol = None,
    timestamp_unit: TimestampUnitOption = None,
    sep: Separator = None,
    source_tz: SourceTz = "UTC",
) -> None:
    """Check a file of bars against the market-data rules without writing anything."""
    from qframe.research.data_lake.validation import validate_market_data

    options = read_options(column_map, symbol, timestamp_unit, sep, source_tz)
    with plain_errors():
        try:
            report = validate_market_data(read_bars(path, options))
        except ValueError as exc:
            fail(in_cli_words(str(exc)))
        if not report.ok:
            fail(in_cli_words(report.summary()), code=1)
        console.print(f"{path}: valid ({report.n_rows:,} bars)")
        for line in report.summary().splitlines()[1:]:  # gaps and how zone-less timestamps were read
            console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("list")
def list_datasets(
    dataset_type: Annotated[str | None, typer.Option("--type", help="raw_market_data, features, ...")] = None,
    symbol: Annotated[str | None, typer.Option(help="only datasets holding this symbol")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable (all must match)")] = None,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Datasets registered in the catalog."""
    from qframe.research.data_lake.catalog import DatasetType

    tags = _parse_tags(tag or [])
    valid_types = [member.value for member in DatasetType]
    if dataset_type and dataset_type not in valid_types:
        fail(choice_error("--type", dataset_type, valid_types))  # before the catalog is opened
    with research_session(workdir, lake, catalog) as session:
        kind = DatasetType(dataset_type) if dataset_type else None
        found = session.catalog.search_sync(tags=tags or None, dataset_type=kind, symbol=symbol)
        table = Table("name", "version", "type", "quality", "rows", "symbols", "start", "end", title="datasets")
        for meta in found:
            cells = [
                meta.name,
                meta.version,
                str(meta.dataset_type),
                str(meta.quality_level),
                f"{meta.row_count:,}",
                ",".join(meta.symbols[:4]) + ("..." if len(meta.symbols) > 4 else ""),
                str(meta.start),
                str(meta.end),
            ]
            table.add_row(*(Text(cell) for cell in cells))  # Text: a symbol like 'X[1]' is data, not markup
        console.print(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (default latest)")],
    head: Annotated[int, typer.Option(min=0, help="rows to print")] = 5,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """One dataset version: catalog entry, lineage and the first rows."""
    name, version = _split_ref(ref)
    with research_session(workdir, lake, catalog) as session:
        meta = session.catalog.get_dataset_sync(name, version)
        console.print(f"[bold]{escape(f'{meta.name}@{meta.version}')}[/] {meta.dataset_type} / {meta.quality_level}")
        # markup=False: symbols, tags and rows are data; rich would take '[...]' in them for style tags.
        summary = f"  rows {meta.row_count:,}, symbols {', '.join(meta.symbols)}, {meta.start} .. {meta.end}"
        console.print(summary, markup=False, highlight=False)
        where = f"  location {meta.location}\n  checksum {meta.checksum}\n  tags {meta.tags}"
        console.print(where, markup=False, highlight=False)
        upstream = session.catalog.lineage_sync(meta.name, meta.version)
        if upstream:
            console.print("  derived from " + ", ".join(f"{ref.name}@{ref.version}" for ref in upstream))
        if head:
            frame = session.storage.read_dataset(meta.name, version=meta.version)
            console.print(frame.head(head).to_string(index=False), markup=False, highlight=False)


@app.command()
def features(
    ref: Annotated[str, typer.Argument(help="bars dataset NAME or NAME@VERSION")],
    group: Annotated[str, typer.Option(help="feature group name (stored as features.<group>)")] = "technical",
    version: Annotated[str, typer.Option(help="feature version to write")] = "v1",
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Compute the built-in feature set on a bars dataset and store it as a feature-group version."""
    from qframe.research.data_lake.catalog import DatasetRef
    from qframe.research.features import compute_features

    name, bars_version = _split_ref(ref)
    with research_session(workdir, lake, catalog) as session:
        bars_meta = session.catalog.get_dataset_sync(name, bars_version)
        bars = session.storage.read_dataset(bars_meta.name, version=bars_meta.version)
        stored = session.feature_store.store_features_sync(
            group,
            compute_features(bars),
            version,
            description=f"built-in features of {bars_meta.name}@{bars_meta.version}",
            derived_from=[DatasetRef(bars_meta.name, bars_meta.version)],
        )
        console.print(f"wrote [bold]{stored.name}@{stored.version}[/]: {stored.row_count:,} rows")


@app.command()
def fsck(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="register orphans, remove/quarantine dangling entries, delete dead attempts"),
    ] = False,
    verify_files: Annotated[
        bool, typer.Option(help="read every registered file and check its sha256 (--no-verify-files: manifests only)")
    ] = True,
    stale_after_hours: Annotated[
        float, typer.Option(min=0.0, help="unreferenced attempts older than this count as dead (writers elsewhere)")
    ] = 24.0,
    orphan_grace_minutes: Annotated[
        float, typer.Option(min=0.0, help="--repair leaves orphans younger than this (a writer may be registering)")
    ] = 5.0,
    s3_endpoint_url: Annotated[
        str | None,
        typer.Option(envvar="QFRAME_S3_ENDPOINT_URL", help="S3 API endpoint (MinIO, moto) for s3:// lakes"),
    ] = None,
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Check the lake against the catalog both ways (and dead writers' leftovers); exit 1 while problems remain."""
    import pandas as pd
    from qframe.research.data_lake import fsck as checker
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with (
        research_session(workdir, lake, catalog, s3_endpoint_url=s3_endpoint_url) as session,
        Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console) as bar,
    ):
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        report = checker.check(
            session.storage,
            session.catalog,
            verify_files=verify_files,
            stale_after=pd.Timedelta(hours=stale_after_hours),
            progress=progress,
        )
        if repair:
            checker.repair(
                session.storage,
                session.catalog,
                report,
                orphan_grace=pd.Timedelta(minutes=orphan_grace_minutes),
                progress=progress,
            )
    table = Table("problem", "dataset", "version", "detail", *(["repair"] if repair else []), title="fsck findings")
    for finding in report.findings:
        row = [finding.kind, finding.name, finding.version, escape(finding.detail)]
        table.add_row(*row, *([escape(finding.repair or "")] if repair else []))
    if report.findings:
        console.print(table)
    remaining = report.problems
    console.print(
        f"checked {report.entries_checked} catalog entries, {report.versions_checked} lake versions, "
        f"{report.attempts_checked} attempt folders ({report.entries_elsewhere} entries in other lakes skipped, "
        f"{report.entries_marked} already quarantined by fsck): {len(report.findings)} problem(s), "
        f"{len(remaining)} remaining",
        highlight=False,
    )
    if remaining:
        hint = "" if repair else "; run again with --repair to fix them"
        fail(f"{len(remaining)} problem(s) remain{hint}", code=EXIT_FAILED)
