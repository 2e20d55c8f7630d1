"""Ingestion of market bars into the lake: from frames, CSV/Parquet files and the synthetic generator.

Every path runs the same steps, in this order, so that a bad batch changes nothing:

1. normalise (column mapping, timestamps parsed to UTC, numbers to float64, sorted by symbol and time);
2. validate (:func:`validate_market_data`); without quarantine any violation raises
   :class:`MarketDataValidationError` before anything is written;
3. check the version is free in the lake and the catalog, or holds exactly these bars (then this is a retry:
   the committed version is adopted and registered, so a retry after any failure completes the first run);
4. write the valid rows with ``storage.write_dataset`` (atomic, immutable version);
5. with quarantine, write the offending rows and their reasons as one Parquet object under
   ``quarantine/<name>/<version>.parquet`` (they may lack a timestamp or symbol, so they cannot be a dataset);
6. register both in the catalog: the dataset as VALIDATED, the quarantine as QUARANTINED.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from qframe.research.data_lake.catalog import (
    CatalogUnavailable,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetMetadata,
    DatasetNotRegistered,
    DatasetType,
)
from qframe.research.data_lake.storage import DataLakeStorage, DatasetNotFound, DatasetVersionExists
from qframe.research.data_lake.storage_layout import (
    MANIFEST_NAME,
    StorageMetadata,
    TimestampLike,
    check_dataset_name,
    check_version,
    version_dir,
)
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import (
    NAIVE_TIMESTAMPS_ATTR,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    MarketDataValidationError,
    ValidationReport,
    validate_market_data,
)
from qframe.research.threaded import in_thread

log = structlog.get_logger(__name__)

PROVIDERS: Final = ("synthetic", "csv", "parquet")
QUARANTINE_PREFIX: Final = "quarantine"
REASONS_COLUMN: Final = "_reasons"
ROW_COLUMN: Final = "_row"
TimestampUnit = Literal["s", "ms", "us", "ns"]

_CSV_SUFFIXES: Final = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_TIMEFRAME = re.compile(r"^(\d+)\s*(m|min|h|d|w)$", re.IGNORECASE)
_TIMEFRAME_UNITS: Final = {"m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}
_DEFAULT_PERIODS: Final = 1000


class IngestionError(ValueError):
    """Ingestion could not start: unknown provider, missing file, unsupported format, version taken..."""


@dataclass(frozen=True)
class QuarantineRecord:
    """Rows set aside by one ingestion: where they are and why."""

    key: str  # storage key of the Parquet object
    location: str  # its URI
    row_count: int
    rule_counts: dict[str, int]
    checksum: str


@dataclass(frozen=True)
class IngestionResult:
    """What one ingestion wrote: the manifest, its catalog entry (if a catalog is attached) and any quarantine."""

    manifest: StorageMetadata | None  # None when every row was quarantined
    dataset: DatasetMetadata | None
    quarantine: QuarantineRecord | None
    report: ValidationReport

    @property
    def stored(self) -> DatasetMetadata | StorageMetadata | None:
        return self.dataset if self.dataset is not None else self.manifest


def timeframe_to_freq(timeframe: str) -> str:
    """Trading timeframes (``1m``, ``5m``, ``1h``, ``4h``, ``1d``, ``1w``) to pandas frequencies (``1min``...)."""
    match = _TIMEFRAME.match(timeframe.strip())
    if match is None:
        raise IngestionError(
            f"timeframe {timeframe!r} is not understood: use <n>m, <n>h, <n>d or <n>w, e.g. '1m', '15m', '1h', '1d'"
        )
    count, unit = match.groups()
    if int(count) < 1:
        raise IngestionError(f"timeframe {timeframe!r} must be at least one unit long")
    return f"{int(count)}{_TIMEFRAME_UNITS[unit.lower()]}"


def normalise_bars(
    df: pd.DataFrame,
    *,
    column_map: Mapping[str, str] | None = None,
    symbol: str | None = None,
    timestamp_unit: TimestampUnit | None = None,
    source_tz: str = "UTC",
) -> pd.DataFrame:
    """A copy of ``df`` in the lake's bar layout, ready for validation.

    ``column_map`` renames source columns (``{"Date": "timestamp", "Ticker": "symbol"}``); ``symbol`` fills
    a missing symbol column for single-instrument files. Timestamps: numbers are epoch values in
    ``timestamp_unit``; naive date-times and strings without an offset are read in ``source_tz``; everything
    ends as datetime64[ns, UTC]. Prices and volume become float64; text that is not a number becomes NaN
    so validation reports the row instead of the parser failing on the first one.
    """
    frame = df.rename(columns=dict(column_map)) if column_map else df.copy()
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise IngestionError(
            f"duplicate column(s) {duplicated} after mapping; map only one source column to each lake column"
        )
    if symbol is not None:
        if "symbol" in frame.columns:
            raise IngestionError("symbol= was given but the data already has a 'symbol' column; pass only one")
        frame["symbol"] = symbol
    frame = _match_columns(frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise IngestionError(
            f"missing column(s) {missing} after mapping; columns present: {list(frame.columns)}. Map yours with "
            "column_map={'<your name>': '<lake name>'}" + (", or pass symbol='<ticker>'" if "symbol" in missing else "")
        )
    raw = frame["timestamp"]
    frame["timestamp"] = _parse_timestamps(raw, unit=timestamp_unit, source_tz=source_tz)
    if _is_naive(raw):
        # Validation reports this reading, so `qframe data validate` says what ingestion will store.
        frame.attrs[NAIVE_TIMESTAMPS_ATTR] = source_tz
    frame["symbol"] = frame["symbol"].astype("str")
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


# Source names that mean a lake column whatever their case (Yahoo's "Date", a vendor's "Datetime"/"Ticker").
_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "date", "datetime", "time"),
    "symbol": ("symbol", "ticker"),
    **{column: (column,) for column in NUMERIC_COLUMNS},
}


def _match_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename ``Open`` to ``open``, ``Date`` to ``timestamp``...: lake columns matched case-insensitively.

    A lake column already present, or two source columns that could be it, is left alone (explicit
    ``column_map`` then decides).
    """
    by_folded: dict[str, list[str]] = {}
    for column in frame.columns:
        by_folded.setdefault(str(column).strip().lower(), []).append(str(column))
    renames: dict[str, str] = {}
    for target, aliases in _COLUMN_ALIASES.items():
        if target in frame.columns:
            continue
        candidates = [name for alias in aliases for name in by_folded.get(alias, [])]
        if len(candidates) == 1 and candidates[0] not in renames:
            renames[candidates[0]] = target
    return frame.rename(columns=renames) if renames else frame


def _is_naive(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_dtype(values.dtype) and not isinstance(values.dtype, pd.DatetimeTZDtype):
        return True
    if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
        return False
    try:
        sample = pd.to_datetime(values.dropna().head(100), format="mixed", errors="coerce")
    except (ValueError, TypeError):  # e.g. several UTC offsets: zoned, so not naive
        return False
    return bool(pd.api.types.is_datetime64_dtype(sample.dtype) and not isinstance(sample.dtype, pd.DatetimeTZDtype))


def _parse_timestamps(values: pd.Series, *, unit: TimestampUnit | None, source_tz: str) -> pd.Series:
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(dtype):
        parsed = values.dt.tz_localize(source_tz).dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(dtype):
        if unit is None:
            raise IngestionError(
                "timestamp holds numbers; say what they count with timestamp_unit='s', 'ms', 'us' or 'ns' "
                "(epoch seconds, milliseconds...)"
            )
        parsed = pd.to_datetime(values, unit=unit, utc=True)
    else:
        parsed = _parse_text_timestamps(values)
        if not isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(source_tz)
        parsed = parsed.dt.tz_convert("UTC")
    return parsed.dt.as_unit("ns")


def _parse_text_timestamps(values: pd.Series) -> pd.Series:
    try:
        return pd.to_datetime(values, format="mixed")
    except (ValueError, TypeError):
        pass
    try:
        # Different UTC offsets in one column (e.g. across a DST change) only have a common form in UTC.
        return pd.to_datetime(values, format="mixed", utc=True)
    except (ValueError, TypeError) as exc:
        raise IngestionError(
            f"timestamp values could not be parsed as dates ({exc}); use ISO 8601 text such as "
            "'2024-01-01T09:30:00Z' or epoch numbers with timestamp_unit="
        ) from exc


def read_bars_file(path: str | Path, *, csv_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``, ``.tsv``...) or Parquet (``.parquet``, ``.pq``) file as a frame, by suffix."""
    file = Path(path)
    if not file.is_file():
        where = "is a directory" if file.is_dir() else "does not exist"
        raise IngestionError(f"cannot ingest {str(file)!r}: the file {where}")
    name = file.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return pd.read_parquet(file)
    if name.endswith(_CSV_SUFFIXES):
        options = dict(csv_options or {})
        if name.endswith(".tsv"):
            options.setdefault("sep", "\t")
        return pd.read_csv(file, **options)
    raise IngestionError(
        f"cannot ingest {str(file)!r}: unsupported suffix; use one of {', '.join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}"
    )


class DataIngestionPipeline:
    """Validates bars and writes them to the lake as immutable versions, registered in the catalog if one is given.

    ``quarantine=True`` writes the valid rows and sets the offending ones aside with their reasons; without
    it, a batch with any bad row is refused whole and nothing is written.
    """

    def __init__(
        self,
        storage: DataLakeStorage,
        catalog: DataCatalog | None = None,
        *,
        quarantine: bool = False,
        max_examples: int = 20,
    ) -> None:
        self.storage = storage
        self.catalog = catalog
        self.quarantine = quarantine
        self.max_examples = max_examples

    # --- frames -------------------------------------------------------------------------------------

    def ingest_frame_sync(
        self,
        df: pd.DataFrame,
        *,
        name: str,
        version: str,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        dataset_type: DatasetType = DatasetType.RAW_MARKET_DATA,
        extra: Mapping[str, str] | None = None,
        overwrite: bool = False,
        column_map: Mapping[str, str] | None = None,
        symbol: str | None = None,
        timestamp_unit: TimestampUnit | None = None,
        source_tz: str = "UTC",
    ) -> DatasetMetadata | StorageMetadata:
        """Ingests ``df`` as ``name``/``version``; returns the catalog entry, or the manifest without a catalog."""
        result = self.ingest_frame_detailed_sync(
            df,
            name=name,
            version=version,
            tags=tags,
            description=description,
            dataset_type=dataset_type,
            extra=extra,
            overwrite=overwrite,
            column_map=column_map,
            symbol=symbol,
            timestamp_unit=timestamp_unit,
            source_tz=source_tz,
        )
        stored = result.stored
        if stored is None:  # every row quarantined: nothing to return as "the dataset"
            raise MarketDataValidationError(result.report)
        return stored

    def ingest_frame_detailed_sync(
        self,
        df: pd.DataFrame,
        *,
        name: str,
        version: str,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        dataset_type: DatasetType = DatasetType.RAW_MARKET_DATA,
        extra: Mapping[str, str] | None = None,
        overwrite: bool = False,
        column_map: Mapping[str, str] | None = None,
        symbol: str | None = None,
        timestamp_unit: TimestampUnit | None = None,
        source_tz: str = "UTC",
    ) -> IngestionResult:
        """Like :meth:`ingest_frame_sync`, but returns everything written, including the quarantine record."""
        if not isinstance(df, pd.DataFrame):
            raise IngestionError(f"expected a pandas DataFrame of bars, got {type(df).__name__}")
        check_dataset_name(name)
        check_version(version)
        bars = normalise_bars(
            df, column_map=column_map, symbol=symbol, timestamp_unit=timestamp_unit, source_tz=source_tz
        )
        report = validate_market_data(bars, max_examples=self.max_examples)
        if not report.ok and (report.schema_errors or not self.quarantine):
            log.warning("ingest.rejected", dataset=name, version=version, rules=report.rules_broken)
            raise MarketDataValidationError(report)
        valid = bars[~report.invalid_mask]
        ordered = valid.sort_values(["symbol", "timestamp"], kind="stable") if len(valid) else None
        self._check_free(name, version, ordered, overwrite=overwrite)

        manifest = dataset = quarantine = None
        all_tags = {"rows_quarantined": str(report.n_invalid), **dict(tags or {})}
        if ordered is not None:
            # adopt_identical: a retry after a failed registration finds its own committed version and goes on.
            manifest = self.storage.write_dataset(
                name, ordered, version=version, overwrite=overwrite, extra=extra, adopt_identical=True
            )
        if report.n_invalid:
            quarantine = self._write_quarantine(bars, report, name=name, version=version)
        if self.catalog is not None:
            try:
                if manifest is not None:
                    dataset = self.catalog.register_manifest_sync(
                        manifest,
                        dataset_type=dataset_type,
                        quality_level=DataQuality.VALIDATED,
                        tags=all_tags,
                        description=description,
                    )
                if quarantine is not None:
                    self._register_quarantine(quarantine, bars, report, name=name, version=version, tags=tags)
            except CatalogUnavailable as exc:
                raise CatalogUnavailable(
                    f"{name!r} version {version!r} is committed in the lake {self.storage.url}, but the catalog could "
                    f"not confirm its registration: {exc}. The lake data is kept: run the same ingest again (it "
                    "registers the committed version) or `qframe data fsck --repair`"
                ) from None
        log.info(
            "ingest.done",
            dataset=name,
            version=version,
            rows=0 if manifest is None else manifest.row_count,
            quarantined=report.n_invalid,
        )
        return IngestionResult(manifest, dataset, quarantine, report)

    def _check_free(self, name: str, version: str, ordered: pd.DataFrame | None, *, overwrite: bool) -> None:
        """Refuses, before anything is written, a version that holds other data; the same data is a retry."""
        checksum = None if ordered is None else self.storage.content_checksum_of(ordered)
        # Looking for the manifest object directly: listing every version would read all their manifests.
        if not overwrite and self.storage.exists(f"{version_dir(name, version)}/{MANIFEST_NAME}"):
            try:
                committed = self.storage.manifest(name, version)
            except DatasetNotFound:
                return  # deleted since: the write decides
            if committed.checksum != checksum:
                raise DatasetVersionExists(
                    f"dataset {name!r} version {version!r} already exists in {self.storage.url} with other data; "
                    "versions are immutable: ingest under a new version. overwrite=True replaces the data every "
                    "reader of this version sees: use it only to repair a version from its source"
                )
        registered = self._registered(name, version)
        if registered is not None:
            if registered.location == self.storage.uri(version_dir(name, version)) and registered.checksum == checksum:
                return  # a retry, or an overwrite that restores exactly the registered content
            repair = (
                " overwrite=True only rewrites a registered version with the very content it was registered "
                "with (to repair damaged files); "
                if overwrite
                else " "
            )
            raise DatasetAlreadyRegistered(
                f"dataset {name!r} version {version!r} is already registered in the catalog {self.catalog_url} with "
                f"other data (checksum {registered.checksum}, at {registered.location}); nothing was written. "
                f"Versions are immutable:{repair}ingest under a new version"
            )

    @property
    def catalog_url(self) -> str:
        return "" if self.catalog is None else self.catalog.url

    def _registered(self, name: str, version: str) -> DatasetMetadata | None:
        if self.catalog is None:
            return None
        try:
            return self.catalog.get_dataset_sync(name, version)
        except DatasetNotRegistered:
            return None

    def _write_quarantine(
        self, bars: pd.DataFrame, report: ValidationReport, *, name: str, version: str
    ) -> QuarantineRecord:
        rows = bars[report.invalid_mask].copy()
        rows.insert(0, ROW_COLUMN, np.flatnonzero(report.invalid_mask))
        rows[REASONS_COLUMN] = report.row_reasons[report.invalid_mask].astype(str)
        data = _parquet_bytes(rows.reset_index(drop=True))
        key = f"{QUARANTINE_PREFIX}/{name}/{version}.parquet"
        self.storage.put_bytes(key, data, overwrite=True)
        counts = {v.rule: v.count for v in report.violations}
        log.warning("ingest.quarantined", dataset=name, version=version, rows=len(rows), rules=counts)
        return QuarantineRecord(
            key=key,
            location=self.storage.uri(key),
            row_count=len(rows),
            rule_counts=counts,
            checksum=f"sha256:{hashlib.sha256(data).hexdigest()}",
        )

    def _register_quarantine(
        self,
        record: QuarantineRecord,
        bars: pd.DataFrame,
        report: ValidationReport,
        *,
        name: str,
        version: str,
        tags: Mapping[str, str] | None,
    ) -> DatasetMetadata:
        if self.catalog is None:
            raise IngestionError("internal: quarantine registration needs a catalog")
        rows = bars[report.invalid_mask]
        stamps = rows["timestamp"].dropna()
        rule_tags = {f"rule.{rule}": str(count) for rule, count in record.rule_counts.items()}
        return self.catalog.register_dataset_sync(
            quarantine_name(name),
            version=version,
            dataset_type=DatasetType.RAW_MARKET_DATA,
            quality_level=DataQuality.QUARANTINED,
            schema={c: str(t) for c, t in rows.dtypes.items()} | {ROW_COLUMN: "int64", REASONS_COLUMN: "string"},
            location=record.location,
            checksum=record.checksum,
            row_count=record.row_count,
            tags={**dict(tags or {}), **rule_tags, "quarantine_of": name},
            symbols=sorted({s for s in rows["symbol"].dropna() if s}),
            start=stamps.min() if len(stamps) else None,
            end=stamps.max() if len(stamps) else None,
            description=f"rows of {name} {version} that failed validation; reasons per row in {REASONS_COLUMN}",
        )

    # --- files and providers ------------------------------------------------------------------------

    def ingest_file_sync(
        self,
        path: str | Path,
        *,
        name: str,
        version: str,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        column_map: Mapping[str, str] | None = None,
        symbol: str | None = None,
        timestamp_unit: TimestampUnit | None = None,
        source_tz: str = "UTC",
        csv_options: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> DatasetMetadata | StorageMetadata:
        """Ingests one CSV or Parquet file (chosen by suffix); tags record the source file."""
        frame = read_bars_file(path, csv_options=csv_options)
        file_tags = {"source": "file", "file": Path(path).name, **dict(tags or {})}
        return self.ingest_frame_sync(
            frame,
            name=name,
            version=version,
            tags=file_tags,
            description=description,
            column_map=column_map,
            symbol=symbol,
            timestamp_unit=timestamp_unit,
            source_tz=source_tz,
            overwrite=overwrite,
        )

    def ingest_market_data_sync(
        self,
        provider: str = "synthetic",
        symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
        timeframe: str = "1h",
        start_date: TimestampLike = "2024-01-01",
        end_date: TimestampLike | None = None,
        *,
        name: str | None = None,
        version: str | None = None,
        path: str | Path | None = None,
        seed: int = 0,
        periods: int | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> DatasetMetadata | StorageMetadata:
        """Bars from a provider: ``synthetic`` (deterministic from ``seed``) or ``csv``/``parquet`` (read ``path``).

        The synthetic range is ``start_date`` to ``end_date`` (exclusive) or ``periods`` bars (default 1000).
        Default name ``bars.<provider>-<timeframe>``, default version the UTC time of the call.
        """
        provider_key = provider.strip().lower()
        if provider_key not in PROVIDERS:
            raise IngestionError(
                f"unknown provider {provider!r}: this platform ingests {', '.join(PROVIDERS)} (it has no route to "
                "exchanges or vendors); export the data to a CSV or Parquet file and use provider='csv' with path="
            )
        freq = timeframe_to_freq(timeframe)
        dataset_name = name or f"bars.{provider_key}-{timeframe.strip().lower()}"
        dataset_version = version or pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
        base_tags = {"source": provider_key, "timeframe": timeframe, **dict(tags or {})}
        if provider_key == "synthetic":
            bars = generate_market_data(
                symbols, start=start_date, periods=_periods(start_date, end_date, freq, periods), freq=freq, seed=seed
            )
            return self.ingest_frame_sync(
                bars,
                name=dataset_name,
                version=dataset_version,
                tags={**base_tags, "seed": str(seed)},
                description=description or f"synthetic regime-switching bars, seed {seed}",
            )
        if path is None:
            raise IngestionError(f"provider {provider!r} reads a file: pass path='<file>.{provider_key}'")
        frame = read_bars_file(path)
        if symbols and "symbol" in frame.columns:
            frame = frame[frame["symbol"].astype(str).isin(list(symbols))]
        return self.ingest_frame_sync(
            frame,
            name=dataset_name,
            version=dataset_version,
            tags={**base_tags, "file": Path(path).name},
            description=description,
        )

    ingest_market_data = in_thread(ingest_market_data_sync)
    ingest_frame = in_thread(ingest_frame_sync)
    ingest_file = in_thread(ingest_file_sync)


def bars_checksum(bars: pd.DataFrame) -> str:
    """``sha256:<hex>`` of the OHLCV content of ``bars``, independent of row order, index and extra columns.

    Two frames with the same bars (same symbols, instants and float64 values) have the same checksum,
    whatever path they took (a Kafka round trip, the lake, a file).
    """
    ordered = bars.sort_values(["symbol", "timestamp"], kind="stable")
    digest = hashlib.sha256()
    digest.update(pd.DatetimeIndex(ordered["timestamp"]).tz_convert("UTC").as_unit("ns").asi8.tobytes())
    digest.update("\0".join(ordered["symbol"].astype(str)).encode())
    for column in NUMERIC_COLUMNS:
        digest.update(ordered[column].to_numpy(dtype=np.float64).tobytes())
    return f"sha256:{digest.hexdigest()}"


def quarantine_name(name: str) -> str:
    """Catalog name of the rows set aside from dataset ``name``."""
    return f"{QUARANTINE_PREFIX}.{name}"


def read_quarantine(storage: DataLakeStorage, name: str, version: str) -> pd.DataFrame:
    """The rows quarantined from ``name``/``version`` with their original position and reasons."""
    return pd.read_parquet(io.BytesIO(storage.get_bytes(f"{QUARANTINE_PREFIX}/{name}/{version}.parquet")))


def _periods(start: TimestampLike, end: TimestampLike | None, freq: str, periods: int | None) -> int:
    if end is None:
        return periods if periods is not None else _DEFAULT_PERIODS
    if periods is not None:
        raise IngestionError("pass either end_date or periods, not both")
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    first = first.tz_localize("UTC") if first.tzinfo is None else first
    last = last.tz_localize("UTC") if last.tzinfo is None else last
    count = len(pd.date_range(first, last, freq=freq, inclusive="left"))
    if count < 1:
        raise IngestionError(f"end_date {end!r} is not after start_date {start!r}: no bars in that range")
    return count


def _arrow_column(values: pd.Series) -> pa.Array:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        # Explicit conversion: handing pandas tz-aware columns to Arrow goes through a deprecated pandas path.
        utc = values.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns").to_numpy()
        return pa.array(utc, type=pa.timestamp("ns", tz="UTC"))
    return pa.array(values, from_pandas=True)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    try:
        table = pa.table({str(c): _arrow_column(frame[c]) for c in frame.columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Rows that failed validation may hold anything; text keeps every value readable.
        table = pa.Table.from_pandas(frame.astype(str), preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
