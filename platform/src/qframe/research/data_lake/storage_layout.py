"""Pure helpers of the lake layout: name rules, frame checks, partition paths and the manifest format.

Nothing here touches a filesystem, so every rule can be unit-tested on its own and the storage
classes stay a thin layer of I/O around these functions.

Layout of one committed dataset version (``location`` in the manifest)::

    datasets/<name>/<version>/_manifest.json                       <- written last, one atomic put
    datasets/<name>/<version>/attempt-<id>/symbol=<sym>/month=YYYY-MM/part-00000.parquet

Symbols are URL-quoted in paths (``BTC/USDT`` -> ``symbol=BTC%2FUSDT``) and the manifest keeps the
exact symbol, so the roundtrip never depends on decoding a path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import quote

import numpy as np
import pandas as pd

TimestampLike: TypeAlias = pd.Timestamp | datetime | str | np.datetime64
TimePartition: TypeAlias = Literal["day", "month", "year"]

DATASET_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
VERSION_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LATEST: Final = "latest"
SYMBOL_COLUMN: Final = "symbol"
MANIFEST_NAME: Final = "_manifest.json"
MANIFEST_FORMAT: Final = "qframe-lake/1"
DATASETS_DIR: Final = "datasets"
ATTEMPT_PREFIX: Final = "attempt-"
# The catalog's symbol column holds 128 characters; a path segment ("symbol=" + encoded) at most 255 bytes
# on common filesystems (ENAMETOOLONG beyond), so the encoded symbol keeps a margin below that.
MAX_SYMBOL_CHARS: Final = 128
MAX_ENCODED_SYMBOL_BYTES: Final = 240

# numpy datetime units whose truncation gives the partition bucket, and the path label format.
_BUCKET_UNITS: Final[dict[str, str]] = {"day": "D", "month": "M", "year": "Y"}
_BUCKET_LABELS: Final[dict[str, str]] = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


class StorageError(Exception):
    """Base class of every data lake storage error."""


class LayoutError(StorageError, ValueError):
    """Bad input to the lake (name, version, frame); the message says what is wrong and how to fix it."""


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not DATASET_NAME_RE.fullmatch(name):
        raise LayoutError(
            f"invalid dataset name {name!r}: use 1-128 chars of lowercase letters, digits, '_', '.', '-' "
            "starting with a letter or digit (e.g. 'bars.synthetic-1m')"
        )
    return name


def check_version(version: str, *, allow_latest: bool = False) -> str:
    if allow_latest and version == LATEST:
        return version
    if version == LATEST:
        raise LayoutError("version 'latest' is reserved (it means the newest committed version); pick e.g. 'v1'")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise LayoutError(
            f"invalid version {version!r}: use 1-64 chars of letters, digits, '_', '.', '-' starting with a "
            "letter or digit (e.g. 'v1', 'v1.2', '20260101T000000Z')"
        )
    return version


def check_key(key: str) -> str:
    """An object key relative to the storage root: no empty, '.' or '..' segments, no leading '/'."""
    if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/"):
        raise LayoutError(f"invalid object key {key!r}: use a relative path like 'checkpoints/run-1/state.json'")
    bad = [part for part in key.split("/") if part in {"", ".", ".."}]
    if bad:
        raise LayoutError(f"invalid object key {key!r}: empty, '.' or '..' path segments are not allowed")
    return key


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or prefix.startswith("/") or any(p in {".", ".."} for p in prefix.split("/")):
        raise LayoutError(f"invalid key prefix {prefix!r}: use a relative prefix like 'checkpoints/run-1/'")
    return prefix


def encode_symbol(symbol: str) -> str:
    # quote() with no safe characters keeps only [A-Za-z0-9_.~-], so '/', '=', '%' and spaces never reach a path.
    return quote(symbol, safe="")


def version_dir(name: str, version: str) -> str:
    return f"{DATASETS_DIR}/{name}/{version}"


def to_utc_timestamp(value: TimestampLike, *, what: str) -> pd.Timestamp:
    """A filter bound as a UTC timestamp; naive values are refused like naive data."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{what}={value!r} is not a timestamp: pass e.g. '2024-01-01T00:00Z'") from exc
    if ts is pd.NaT:
        raise LayoutError(f"{what} is NaT: pass a real timestamp or None")
    if ts.tzinfo is None:
        raise LayoutError(
            f"{what}={value!r} has no timezone; the lake stores UTC instants. Pass e.g. '2024-01-01T00:00Z' "
            "or pd.Timestamp(...).tz_localize('UTC')"
        )
    return ts.tz_convert("UTC").as_unit("ns")


def _check_columns(df: pd.DataFrame, time_column: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise LayoutError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise LayoutError("the frame is empty: a dataset version needs at least one row")
    non_str = [repr(c) for c in df.columns if not isinstance(c, str)]
    if non_str:
        raise LayoutError(f"column names must be strings, got {', '.join(non_str)}: rename them first")
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise LayoutError(f"duplicate column names {dupes}: make every column name unique")
    missing = [c for c in (time_column, SYMBOL_COLUMN) if c not in df.columns]
    if missing:
        in_index = [c for c in missing if c in (df.index.names or [])]
        hint = f" ({', '.join(in_index)} is in the index: call df.reset_index() first)" if in_index else ""
        raise LayoutError(f"missing required column(s) {missing}{hint}; columns present: {list(df.columns)}")


def _check_times(df: pd.DataFrame, time_column: str) -> None:
    times = df[time_column]
    dtype = times.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(dtype):
            raise LayoutError(
                f"column {time_column!r} is timezone-naive; the lake stores UTC instants. If the values are UTC, "
                f"fix with df[{time_column!r}] = df[{time_column!r}].dt.tz_localize('UTC')"
            )
        raise LayoutError(
            f"column {time_column!r} has dtype {dtype}, expected datetime64[ns, UTC]; convert with "
            f"pd.to_datetime(df[{time_column!r}], utc=True)"
        )
    if str(dtype.tz) != "UTC":
        raise LayoutError(
            f"column {time_column!r} is in timezone {dtype.tz}, the lake stores UTC; convert with "
            f"df[{time_column!r}] = df[{time_column!r}].dt.tz_convert('UTC')"
        )
    if times.isna().any():
        rows = list(df.index[times.isna()][:5])
        raise LayoutError(f"column {time_column!r} has missing values (first rows: {rows}); drop or fill them")


def _check_symbol_lengths(symbols: pd.Series) -> None:
    """Symbols become one path segment (``symbol=<url-quoted>``): longer than a file name may be, they are refused."""
    too_long = []
    for symbol in pd.unique(symbols):
        encoded = len(encode_symbol(symbol).encode())
        if len(symbol) > MAX_SYMBOL_CHARS or encoded > MAX_ENCODED_SYMBOL_BYTES:
            too_long.append((symbol, len(symbol), encoded))
    if too_long:
        symbol, chars, encoded = too_long[0]
        raise LayoutError(
            f"{len(too_long)} symbol(s) are too long for the lake, e.g. {symbol[:40]!r}... ({chars} characters, "
            f"{encoded} bytes once URL-encoded in its path); a symbol may have at most {MAX_SYMBOL_CHARS} characters "
            f"and {MAX_ENCODED_SYMBOL_BYTES} encoded bytes: map long identifiers to short codes (e.g. a ticker)"
        )


def _check_symbols(df: pd.DataFrame) -> None:
    symbols = df[SYMBOL_COLUMN]
    if pd.api.types.infer_dtype(symbols, skipna=True) == "string":
        bad_symbol = symbols.isna() | (symbols == "")  # vectorised: the common case of string columns
    else:
        bad_symbol = symbols.isna() | ~symbols.map(lambda s: isinstance(s, str) and s != "").astype(bool)
    if bad_symbol.any():
        rows = list(df.index[bad_symbol][:5])
        examples = [symbols[r] for r in rows]
        raise LayoutError(
            f"column 'symbol' must hold non-empty strings; bad values {examples!r} at rows {rows}. "
            "Fix with df['symbol'] = df['symbol'].astype(str) or drop those rows"
        )
    _check_symbol_lengths(symbols)


def normalise_frame(df: pd.DataFrame, *, time_column: str) -> pd.DataFrame:
    """Checks a frame for the lake and returns a copy sorted by (symbol, time) with ns UTC times.

    Raises LayoutError naming the problem and the fix; nothing is written before this passes.
    """
    _check_columns(df, time_column)
    _check_times(df, time_column)
    _check_symbols(df)
    out = df.reset_index(drop=True)
    out[time_column] = out[time_column].dt.as_unit("ns")
    out[SYMBOL_COLUMN] = out[SYMBOL_COLUMN].astype("str")
    codes, _ = pd.factorize(out[SYMBOL_COLUMN], sort=True)
    order = np.lexsort((out[time_column].dt.tz_localize(None).to_numpy().view("i8"), codes))
    if not np.array_equal(order, np.arange(len(out))):
        out = out.take(order).reset_index(drop=True)
    return out


@dataclass(frozen=True)
class PartitionSlice:
    """Rows [start, stop) of the sorted frame that go to one data file."""

    symbol: str
    bucket: str  # '' when time_partition is None
    start: int
    stop: int


def plan_partitions(
    df: pd.DataFrame, *, time_column: str, time_partition: TimePartition | None, max_rows_per_file: int
) -> list[PartitionSlice]:
    """Contiguous runs of (symbol, time bucket) in a frame sorted by normalise_frame, split into files."""
    if time_partition is not None and time_partition not in _BUCKET_UNITS:
        raise LayoutError(f"time_partition={time_partition!r}: use 'day', 'month', 'year' or None")
    codes, uniques = pd.factorize(df[SYMBOL_COLUMN], sort=True)
    times = df[time_column].dt.tz_localize(None).to_numpy()
    if time_partition is None:
        buckets = np.zeros(len(df), dtype="i8")
    else:
        buckets = times.astype(f"datetime64[{_BUCKET_UNITS[time_partition]}]").view("i8")
    change = np.flatnonzero((codes[1:] != codes[:-1]) | (buckets[1:] != buckets[:-1])) + 1
    bounds = [0, *change.tolist(), len(df)]
    slices: list[PartitionSlice] = []
    for lo, hi in itertools.pairwise(bounds):
        label = "" if time_partition is None else pd.Timestamp(times[lo]).strftime(_BUCKET_LABELS[time_partition])
        for part_lo in range(lo, hi, max_rows_per_file):
            slices.append(PartitionSlice(str(uniques[codes[lo]]), label, part_lo, min(hi, part_lo + max_rows_per_file)))
    return slices


def partition_path(slice_: PartitionSlice, *, time_partition: TimePartition | None, part: int) -> str:
    parts = [f"{SYMBOL_COLUMN}={encode_symbol(slice_.symbol)}"]
    if time_partition is not None:
        parts.append(f"{time_partition}={slice_.bucket}")
    parts.append(f"part-{part:05d}.parquet")
    return "/".join(parts)


@dataclass(frozen=True)
class FileEntry:
    """One data file of a version, as recorded in the manifest."""

    path: str  # relative to the version directory
    symbol: str
    rows: int
    size_bytes: int
    sha256: str
    start: pd.Timestamp  # first and last timestamp in the file (inclusive)
    end: pd.Timestamp
    # CRC-32 of the file: what reads check by default (4 GB/s in zlib, against ~1 GB/s for sha256, so
    # verifying costs little next to decoding). None in manifests written before it was recorded.
    crc32: int | None = None

    def overlaps(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
        """Whether rows in [start, end) can be in this file."""
        return (start is None or self.end >= start) and (end is None or self.start < end)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "symbol": self.symbol,
            "rows": self.rows,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            **({} if self.crc32 is None else {"crc32": self.crc32}),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FileEntry:
        return cls(
            path=str(raw["path"]),
            symbol=str(raw["symbol"]),
            rows=int(raw["rows"]),
            size_bytes=int(raw["size_bytes"]),
            sha256=str(raw["sha256"]),
            start=pd.Timestamp(raw["start"]).tz_convert("UTC"),
            end=pd.Timestamp(raw["end"]).tz_convert("UTC"),
            crc32=None if raw.get("crc32") is None else int(raw["crc32"]),
        )


def content_checksum(entries: Sequence[FileEntry], attempt_dir: str) -> str:
    """sha256 over (partition path, file sha256) pairs; the attempt dir is left out so equal frames match."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        relative = entry.path.removeprefix(f"{attempt_dir}/")
        digest.update(f"{relative}\0{entry.sha256}\n".encode())
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class StorageMetadata:
    """The committed manifest of one dataset version."""

    name: str
    version: str
    location: str
    files: tuple[str, ...]
    row_count: int
    size_bytes: int
    checksum: str
    schema: dict[str, str]
    symbols: tuple[str, ...]
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    partitioning: tuple[str, ...]
    created_at: pd.Timestamp
    extra: dict[str, str]
    # Additions beyond the shared contract: what readers need to prune and verify.
    time_column: str = "timestamp"
    file_entries: tuple[FileEntry, ...] = field(default=(), repr=False)
    arrow_schema: str = field(default="", repr=False)  # base64 Arrow IPC schema, for exact empty reads

    def to_json_bytes(self) -> bytes:
        body = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "location": self.location,
            "row_count": self.row_count,
            "size_bytes": self.size_bytes,
            "checksum": self.checksum,
            # Pairs, not an object: sort_keys must not reorder the columns.
            "schema": [[column, type_name] for column, type_name in self.schema.items()],
            "arrow_schema": self.arrow_schema,
            "symbols": list(self.symbols),
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "partitioning": list(self.partitioning),
            "time_column": self.time_column,
            "created_at": self.created_at.isoformat(),
            "extra": self.extra,
            "files": [entry.to_json() for entry in self.file_entries],
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes, *, source: str) -> StorageMetadata:
        try:
            raw = json.loads(data)
            if raw.get("format") != MANIFEST_FORMAT:
                raise LayoutError(f"manifest {source} has format {raw.get('format')!r}, expected {MANIFEST_FORMAT}")
            entries = tuple(FileEntry.from_json(item) for item in raw["files"])
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                location=str(raw["location"]),
                files=tuple(e.path for e in entries),
                row_count=int(raw["row_count"]),
                size_bytes=int(raw["size_bytes"]),
                checksum=str(raw["checksum"]),
                schema={str(k): str(v) for k, v in raw["schema"]},
                symbols=tuple(str(s) for s in raw["symbols"]),
                start=None if raw["start"] is None else pd.Timestamp(raw["start"]).tz_convert("UTC"),
                end=None if raw["end"] is None else pd.Timestamp(raw["end"]).tz_convert("UTC"),
                partitioning=tuple(str(p) for p in raw["partitioning"]),
                created_at=pd.Timestamp(raw["created_at"]).tz_convert("UTC"),
                extra={str(k): str(v) for k, v in raw["extra"].items()},
                time_column=str(raw["time_column"]),
                file_entries=entries,
                arrow_schema=str(raw.get("arrow_schema", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, LayoutError):
                raise
            raise LayoutError(f"manifest {source} is unreadable ({type(exc).__name__}: {exc})") from exc


def check_extra(extra: Mapping[str, str] | None) -> dict[str, str]:
    if extra is None:
        return {}
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise LayoutError(f"extra must map str to str; bad entries for keys {bad!r}: convert values with str()")
    return dict(extra)
