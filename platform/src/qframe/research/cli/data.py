"""`qframe data ...`: put bars into the lake, look at what is there, derive feature versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from qframe.research.cli._common import CatalogUrl, LakeUrl, Workdir, console, fail, plain_errors, research_session
from rich.table import Table

app = typer.Typer(help="Datasets in the lake: generate, ingest, validate, list, show, features.", no_args_is_help=True)


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
    workdir: Workdir = None,
    lake: LakeUrl = None,
    catalog: CatalogUrl = None,
) -> None:
    """Validate a file of bars and write it to the lake as an immutable version."""
    from qframe.research.data_lake.ingestion import DataIngestionPipeline

    tags = _parse_tags(tag or [])
    with research_session(workdir, lake, catalog) as session:
        pipeline = DataIngestionPipeline(session.storage, session.catalog, quarantine=quarantine)
        stored = pipeline.ingest_file_sync(path, name=name, version=version, tags=tags)
        console.print(f"wrote [bold]{stored.name}@{stored.version}[/]: {stored.row_count:,} bars -> {stored.location}")


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="a .csv or .parquet file of OHLCV bars")]) -> None:
    """Check a file of bars against the market-data rules without writing anything."""
    from qframe.research.data_lake.ingestion import normalise_bars, read_bars_file
    from qframe.research.data_lake.validation import validate_market_data

    with plain_errors():
        report = validate_market_data(normalise_bars(read_bars_file(path)))
        if not report.ok:
            fail(report.summary(), code=1)
        console.print(f"{path}: valid ({report.n_rows:,} bars)")


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
    with research_session(workdir, lake, catalog) as session:
        kind = DatasetType(dataset_type) if dataset_type else None
        found = session.catalog.search_sync(tags=tags or None, dataset_type=kind, symbol=symbol)
        table = Table("name", "version", "type", "quality", "rows", "symbols", "start", "end", title="datasets")
        for meta in found:
            table.add_row(
                meta.name,
                meta.version,
                str(meta.dataset_type),
                str(meta.quality_level),
                f"{meta.row_count:,}",
                ",".join(meta.symbols[:4]) + ("..." if len(meta.symbols) > 4 else ""),
                str(meta.start),
                str(meta.end),
            )
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
        console.print(f"[bold]{meta.name}@{meta.version}[/] {meta.dataset_type} / {meta.quality_level}")
        console.print(f"  rows {meta.row_count:,}, symbols {', '.join(meta.symbols)}, {meta.start} .. {meta.end}")
        console.print(f"  location {meta.location}\n  checksum {meta.checksum}\n  tags {meta.tags}")
        upstream = session.catalog.lineage_sync(meta.name, meta.version)
        if upstream:
            console.print("  derived from " + ", ".join(f"{ref.name}@{ref.version}" for ref in upstream))
        if head:
            frame = session.storage.read_dataset(meta.name, version=meta.version)
            console.print(frame.head(head).to_string(index=False))


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
