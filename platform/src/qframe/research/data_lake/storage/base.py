"""What every lake backend shares: datasets and objects over an fsspec filesystem, manifest-committed versions.

:class:`DataLakeStorage` does all the work; a backend (``local``, ``s3``, ``memory``) only builds the
filesystem and says how to put one object atomically (``_write``).

A version is visible only once its ``_manifest.json`` exists; the manifest is written last, in one atomic
put, and lists every data file with its size and sha256. Data files go to a fresh ``attempt-<id>``
directory per write, so an overwrite never touches the files a committed manifest points at, and a
crashed writer leaves only an unreferenced attempt directory, removed by the next write of that version.

Concurrency: the manifest is only ever replaced by a conditional swap (``_swap_manifest``: under a
directory lock on local disk, ``If-Match``/``If-None-Match`` on S3), so every writer knows exactly which
manifest it replaced. Writers of one version without ``overwrite`` race safely - exactly one create-only
commit wins, the others get :class:`DatasetVersionExists` and remove their files. Overwriting writers
racing on one version all commit in some order (the last swap wins); each removes only the attempt of the
manifest it replaced, plus attempts whose writer is provably dead (``writer_lease``), so no clean-up ever
removes files a live writer is still writing or a committed manifest references. Readers holding an old
manifest while a version is overwritten may see its files disappear (:class:`DatasetNotFound` naming the
version; read again).

Reads check every file against the size and sha256 its manifest recorded (``verify=False`` opts out).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog
from fsspec import AbstractFileSystem
from qframe.research.data_lake.storage.parquet import arrow_table, empty_schema, parquet_bytes
from qframe.research.data_lake.storage.writer_lease import LEASE_NAME, WriterState, lease_bytes, writer_state
from qframe.research.data_lake.storage_layout import (
    ATTEMPT_PREFIX,
    DATASETS_DIR,
    LATEST,
    MANIFEST_NAME,
    SYMBOL_COLUMN,
    FileEntry,
    LayoutError,
    StorageError,
    StorageMetadata,
    TimePartition,
    TimestampLike,
    check_dataset_name,
    check_extra,
    check_key,
    check_prefix,
    check_version,
    content_checksum,
    normalise_frame,
    partition_path,
    plan_partitions,
    to_utc_timestamp,
    version_dir,
)

log = structlog.get_logger(__name__)

TMP_PREFIX: Final = ".tmp-"
MAX_ROWS_PER_FILE: Final = 2_000_000
DEFAULT_IO_THREADS: Final = 8
# Conditional swaps an overwriting writer retries when other writers keep replacing the manifest first.
MAX_SWAP_TRIES: Final = 50


class DatasetVersionExists(StorageError):  # noqa: N818 - contract names
    """A write of an already committed version without ``overwrite=True``."""


class DatasetNotFound(StorageError, LookupError):  # noqa: N818 - contract names
    """No committed version (or no dataset) under that name."""


class DatasetCorrupted(StorageError):  # noqa: N818 - contract names
    """A data file no longer matches the size or sha256 its manifest recorded (checked on every read)."""


class ManifestChangedError(StorageError):
    """A conditional manifest swap found another manifest than the one it expected (another writer won)."""


class ObjectNotFound(StorageError, KeyError):  # noqa: N818 - contract names
    """``get_bytes`` of a key that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ObjectExists(StorageError):  # noqa: N818 - contract names
    """``put_bytes(..., overwrite=False)`` of a key that already exists."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size in bytes and last modification (UTC; None where the store has none)."""

    key: str
    size: int
    modified: pd.Timestamp | None


def _modified(detail: Mapping[str, Any]) -> pd.Timestamp | None:
    # Each fsspec filesystem names it differently: local 'mtime', S3 'LastModified', memory 'created'.
    for attribute in ("mtime", "LastModified", "last_modified", "created"):
        value = detail.get(attribute)
        if value is None:
            continue
        stamp = pd.Timestamp(value, unit="s") if isinstance(value, int | float) else pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return None


class DataLakeStorage(ABC):
    """Datasets and plain objects under one root of an fsspec filesystem.

    Keys are ``/``-separated paths relative to the root. Datasets live under ``datasets/<name>/<version>/``.
    """

    def __init__(self, fs: AbstractFileSystem, root: str, *, io_threads: int = DEFAULT_IO_THREADS) -> None:
        if io_threads < 1:
            raise LayoutError(f"io_threads={io_threads}: use at least 1")
        self._fs = fs
        self._root = root.rstrip("/")
        self._io_threads = io_threads

    # --- backend hooks -----------------------------------------------------------------------------

    @property
    @abstractmethod
    def url(self) -> str:
        """URI of the storage root: ``file:///...``, ``s3://bucket/prefix`` or ``memory://...``."""

    def _write(self, path: str, data: bytes, *, exclusive: bool) -> None:
        """Puts one object atomically; with ``exclusive`` raises FileExistsError if it exists."""
        if exclusive and self._fs.exists(path):
            raise FileExistsError(path)
        self._fs.pipe_file(path, data)

    def _read_manifest_tagged(self, path: str) -> tuple[bytes, str] | None:
        """The manifest's bytes and the tag ``_swap_manifest`` compares, or None if there is none.

        Default tag: the sha256 of the bytes (backends whose store has its own, like S3's ETag, override).
        """
        try:
            data: bytes = self._fs.cat_file(path)
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def _swap_manifest(self, path: str, data: bytes, *, expected: str | None) -> None:
        """Puts the manifest only if the current one still has tag ``expected`` (None: only if absent).

        Raises :class:`ManifestChangedError` otherwise. This default is check-then-put, atomic only within one
        process when the backend serialises ``_write`` (memory); disk and S3 override it.
        """
        current = self._read_manifest_tagged(path)
        if (None if current is None else current[1]) != expected:
            raise ManifestChangedError(path)
        self._write(path, data, exclusive=expected is None)

    def _remove_tree(self, path: str) -> None:
        """Best effort: a concurrent writer may be adding files below ``path`` while it goes."""
        try:
            self._fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("lake.remove_failed", path=path, error=str(exc))

    # --- paths -------------------------------------------------------------------------------------

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem (e.g. to hand ``dataset_files`` to Dask)."""
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _key(self, path: str) -> str:
        path = self._fs._strip_protocol(path)
        return path[len(self._root) + 1 :] if self._root else path.lstrip("/")

    def uri(self, key: str) -> str:
        """Full URI of a key (the manifest ``location`` is the URI of the version directory)."""
        return f"{self.url.rstrip('/')}/{key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- object primitives -------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        """Stores ``data`` under ``key`` in one atomic put; ``overwrite=False`` refuses an existing key."""
        check_key(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LayoutError(f"put_bytes({key!r}) needs bytes, got {type(data).__name__}: encode it first")
        try:
            self._write(self._path(key), bytes(data), exclusive=not overwrite)
        except FileExistsError:
            raise ObjectExists(
                f"object {key!r} already exists in {self.url}; pass overwrite=True to replace it"
            ) from None

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        try:
            data: bytes = self._fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        return data

    def exists(self, key: str) -> bool:
        check_key(key)
        return bool(self._fs.isfile(self._path(key)))

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key starting with ``prefix`` (a plain string prefix, as in S3), sorted."""
        return [info.key for info in self.list_objects(prefix)]

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """The objects whose key starts with ``prefix``, sorted by key, with size and last modification."""
        check_prefix(prefix)
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(directory) if directory else self._root
        try:
            found = self._fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        objects = []
        for path, detail in found.items():
            key = self._key(path)
            if key.startswith(prefix) and not key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                objects.append(ObjectInfo(key, int(detail.get("size") or 0), _modified(detail)))
        return sorted(objects, key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> None:
        """Deletes every key starting with ``prefix``; an empty prefix is refused (it would wipe the lake)."""
        check_prefix(prefix)
        if not prefix.strip("/"):
            raise LayoutError("delete_prefix('') would delete the whole lake; pass a non-empty prefix")
        if prefix.endswith("/"):
            with suppress(FileNotFoundError):
                self._fs.rm(self._path(prefix.rstrip("/")), recursive=True)
            return
        for key in self.list_keys(prefix):
            with suppress(FileNotFoundError):
                self._fs.rm_file(self._path(key))

    # --- datasets: write ---------------------------------------------------------------------------

    def write_dataset(
        self,
        name: str,
        df: pd.DataFrame,
        *,
        version: str,
        overwrite: bool = False,
        time_column: str = "timestamp",
        time_partition: TimePartition | None = "month",
        extra: Mapping[str, str] | None = None,
        adopt_identical: bool = False,
    ) -> StorageMetadata:
        """Writes ``df`` as version ``version`` of dataset ``name`` and commits it atomically.

        Rows are stored sorted by (symbol, time) in ``symbol=<sym>/<time_partition>=<bucket>/`` files.
        Timestamps must be timezone-aware UTC (naive or other zones are refused with the fix to apply).
        ``adopt_identical=True`` makes a retry idempotent: when the version is already committed with exactly
        this content (same content checksum), its manifest is returned instead of DatasetVersionExists.
        """
        check_dataset_name(name)
        check_version(version)
        extra_map = check_extra(extra)
        if time_partition not in (None, "day", "month", "year"):
            raise LayoutError(f"time_partition={time_partition!r}: use 'day', 'month', 'year' or None")
        frame = normalise_frame(df, time_column=time_column)
        vdir = version_dir(name, version)
        manifest_path = self._path(f"{vdir}/{MANIFEST_NAME}")
        plan = _plan_files(frame, time_column=time_column, time_partition=time_partition)
        if not overwrite and self._fs.exists(manifest_path):
            same = self._identical_committed(vdir, plan) if adopt_identical else None
            if same is not None:
                log.info("lake.identical_version_adopted", dataset=name, version=version, checksum=same.checksum)
                return same
            raise DatasetVersionExists(_exists_message(name, version, self.url, concurrent=False))

        slices, table, times = plan.slices, plan.table, frame[time_column]
        attempt = f"{ATTEMPT_PREFIX}{pd.Timestamp.now(tz='UTC').strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        relative_paths = [f"{attempt}/{path}" for path in plan.partition_paths]

        def write_one(index: int) -> FileEntry:
            slice_ = slices[index]
            data = parquet_bytes(table.slice(slice_.start, slice_.stop - slice_.start))
            self._write(self._path(f"{vdir}/{relative_paths[index]}"), data, exclusive=False)
            return FileEntry(
                path=relative_paths[index],
                symbol=slice_.symbol,
                rows=slice_.stop - slice_.start,
                size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                start=times.iloc[slice_.start],
                end=times.iloc[slice_.stop - 1],
                crc32=zlib.crc32(data),
            )

        attempt_path = self._path(f"{vdir}/{attempt}")
        try:
            # The lease goes first: an attempt with data files always says who writes it (see writer_lease).
            self._write(f"{attempt_path}/{LEASE_NAME}", lease_bytes(), exclusive=True)
            entries = self._map_io(write_one, range(len(slices)))
            metadata = StorageMetadata(
                name=name,
                version=version,
                location=self.uri(vdir),
                files=tuple(entry.path for entry in entries),
                row_count=len(frame),
                size_bytes=sum(entry.size_bytes for entry in entries),
                checksum=content_checksum(entries, attempt),
                schema={f.name: str(f.type) for f in table.schema},
                symbols=tuple(sorted({entry.symbol for entry in entries})),
                start=min(entry.start for entry in entries),
                end=max(entry.end for entry in entries),
                partitioning=(SYMBOL_COLUMN,) if time_partition is None else (SYMBOL_COLUMN, time_partition),
                created_at=pd.Timestamp.now(tz="UTC"),
                extra=extra_map,
                time_column=time_column,
                file_entries=tuple(entries),
                arrow_schema=base64.b64encode(table.schema.serialize().to_pybytes()).decode(),
            )
            self._check_attempt_complete(vdir, attempt, entries, name=name, version=version)
            replaced = self._commit_manifest(manifest_path, metadata.to_json_bytes(), overwrite=overwrite)
        except ManifestChangedError:
            self._remove_tree(attempt_path)
            if adopt_identical:
                winner = self._load_manifest_path(manifest_path, source=vdir)
                if winner.checksum == metadata.checksum:
                    return winner
            raise DatasetVersionExists(_exists_message(name, version, self.url, concurrent=True)) from None
        except BaseException:
            self._remove_tree(attempt_path)
            raise
        try:
            self._clean_after_commit(vdir, replaced=replaced, own=attempt)
        except (OSError, StorageError) as exc:  # committed already (e.g. deleted since): leftovers stay invisible
            log.warning("lake.cleanup_failed", dataset=name, version=version, error=str(exc))
        log.info(
            "lake.version_committed",
            dataset=name,
            version=version,
            rows=metadata.row_count,
            files=len(entries),
            bytes=metadata.size_bytes,
            location=metadata.location,
            replaced=None if replaced is None else replaced.checksum,
        )
        return metadata

    def _identical_committed(self, vdir: str, plan: _FilePlan) -> StorageMetadata | None:
        """The committed manifest of ``vdir`` if it holds exactly the content ``plan`` would write, else None."""
        try:
            committed = self._load_manifest_path(self._path(f"{vdir}/{MANIFEST_NAME}"), source=vdir)
        except DatasetNotFound:
            return None
        return committed if committed.checksum == plan.checksum() else None

    def content_checksum_of(
        self, df: pd.DataFrame, *, time_column: str = "timestamp", time_partition: TimePartition | None = "month"
    ) -> str:
        """The content checksum ``write_dataset`` would record for ``df``, without writing anything.

        Lets a caller compare a frame with a registered version (e.g. an idempotent retry) before touching data.
        """
        frame = normalise_frame(df, time_column=time_column)
        return _plan_files(frame, time_column=time_column, time_partition=time_partition).checksum()

    def _check_attempt_complete(
        self, vdir: str, attempt: str, entries: Sequence[FileEntry], *, name: str, version: str
    ) -> None:
        """Refuses to commit a manifest whose files are not all there with their sizes (never a dead version)."""
        found = self._fs.find(self._path(f"{vdir}/{attempt}"), detail=True)
        sizes = {self._key(path): int(info.get("size", -1)) for path, info in found.items()}
        missing = [e.path for e in entries if sizes.get(f"{vdir}/{e.path}") != e.size_bytes]
        if missing:
            raise StorageError(
                f"dataset {name!r} version {version!r}: {len(missing)} of {len(entries)} data files vanished or "
                f"changed size before the commit (first: {missing[0]}); something removed this writer's attempt "
                "directory; nothing was committed: write again"
            )

    def _commit_manifest(self, path: str, data: bytes, *, overwrite: bool) -> StorageMetadata | None:
        """Swaps the manifest in and returns the one it replaced (None if there was none).

        Without ``overwrite`` only an absent manifest is replaced (ManifestChangedError otherwise). With it, a swap
        that lost to another writer re-reads the manifest and tries again: every overwrite commits, in some
        order, and each knows exactly which manifest (and so which attempt) it made unreferenced.
        """
        for _ in range(MAX_SWAP_TRIES if overwrite else 1):
            current = self._read_manifest_tagged(path)
            if current is not None and not overwrite:
                raise ManifestChangedError(path)
            try:
                self._swap_manifest(path, data, expected=None if current is None else current[1])
            except ManifestChangedError:
                continue
            if current is None:
                return None
            try:
                return StorageMetadata.from_json_bytes(current[0], source=path)
            except StorageError as exc:  # an unreadable old manifest: its attempt stays for a repair tool
                log.warning("lake.replaced_manifest_unreadable", path=path, error=str(exc))
                return None
        if not overwrite:
            raise ManifestChangedError(path)
        raise StorageError(
            f"could not commit {path}: other writers replaced it {MAX_SWAP_TRIES} times in a row while this one "
            "tried; nothing was committed by this writer: write again when the other writers are done"
        )

    def _clean_after_commit(self, vdir: str, *, replaced: StorageMetadata | None, own: str) -> None:
        """Removes what no manifest can reference any more, and nothing a live writer may still be writing.

        That is: the attempt(s) of the manifest this commit replaced (no later manifest can name them), and
        attempts left by writers that are provably dead (their lease says this host, and the pid is gone).
        Attempts of live writers, or of writers on other hosts, stay.
        """
        current = self._load_manifest_path(self._path(f"{vdir}/{MANIFEST_NAME}"), source=vdir)
        keep = {entry.path.split("/", 1)[0] for entry in current.file_entries} | {own}
        superseded = set() if replaced is None else {e.path.split("/", 1)[0] for e in replaced.file_entries}
        try:
            listing = self._fs.ls(self._path(vdir), detail=True)
        except FileNotFoundError:
            return
        for entry in listing:
            base = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if not base.startswith(ATTEMPT_PREFIX) or base in keep:
                continue
            if base in superseded or self._attempt_writer_gone(entry["name"]):
                log.info("lake.unreferenced_attempt_removed", path=entry["name"])
                self._remove_tree(entry["name"])

    def _attempt_writer_gone(self, attempt_path: str) -> bool:
        try:
            lease = self._fs.cat_file(f"{attempt_path}/{LEASE_NAME}")
        except FileNotFoundError:
            # No lease: a live writer puts its lease before any data file, so data without one was left by
            # a writer that predates leases. An attempt with nothing but temp files may be starting now.
            try:
                names = [p.rsplit("/", 1)[-1] for p in self._fs.find(attempt_path)]
            except FileNotFoundError:
                return False
            return any(not n.startswith(TMP_PREFIX) for n in names)
        return writer_state(lease) is WriterState.DEAD

    def _map_io(self, func: Callable[[int], Any], items: range) -> list[Any]:
        if self._io_threads == 1 or len(items) <= 1:
            return [func(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self._io_threads, len(items))) as pool:
            return list(pool.map(func, items))

    # --- datasets: read ----------------------------------------------------------------------------

    def _load_manifest_path(self, path: str, *, source: str) -> StorageMetadata:
        try:
            data = self._fs.cat_file(path)
        except FileNotFoundError:
            raise DatasetNotFound(f"no committed manifest at {source}") from None
        return StorageMetadata.from_json_bytes(data, source=self.uri(source))

    def manifest(self, name: str, version: str = LATEST) -> StorageMetadata:
        """The committed manifest of a version (``latest`` = most recently committed)."""
        check_dataset_name(name)
        check_version(version, allow_latest=True)
        if version == LATEST:
            manifests = self._committed(name)
            if not manifests:
                raise DatasetNotFound(f"dataset {name!r} has no committed version in {self.url}")
            return manifests[-1]
        vdir = version_dir(name, version)
        try:
            return self._load_manifest_path(self._path(f"{vdir}/{MANIFEST_NAME}"), source=vdir)
        except DatasetNotFound:
            known = [m.version for m in self._committed(name)]
            raise DatasetNotFound(
                f"dataset {name!r} has no committed version {version!r} in {self.url}; committed versions: {known}"
            ) from None

    def _committed(self, name: str) -> list[StorageMetadata]:
        try:
            entries = self._fs.ls(self._path(f"{DATASETS_DIR}/{name}"), detail=True)
        except FileNotFoundError:
            return []
        vdirs = [
            version_dir(name, entry["name"].rstrip("/").rsplit("/", 1)[-1])
            for entry in entries
            if entry.get("type") == "directory"
        ]

        def load(index: int) -> StorageMetadata | None:
            # One GET per version; fetched in parallel because on S3 each is a round trip.
            try:
                return self._load_manifest_path(self._path(f"{vdirs[index]}/{MANIFEST_NAME}"), source=vdirs[index])
            except DatasetNotFound:
                return None

        manifests = [m for m in self._map_io(load, range(len(vdirs))) if m is not None]
        return sorted(manifests, key=lambda m: (m.created_at, m.version))

    def list_versions(self, name: str) -> list[str]:
        """Committed versions only, oldest first."""
        check_dataset_name(name)
        return [m.version for m in self._committed(name)]

    def list_datasets(self) -> list[str]:
        """Names of datasets with at least one committed version, sorted."""
        try:
            entries = self._fs.ls(self._path(DATASETS_DIR), detail=True)
        except FileNotFoundError:
            return []
        names = sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")
        return [n for n in names if self._committed(n)]

    def delete_version(self, name: str, version: str) -> None:
        """Uncommits (manifest first, so readers never see a half-deleted version) then removes the files."""
        check_dataset_name(name)
        check_version(version)
        vdir = version_dir(name, version)
        manifest_path = self._path(f"{vdir}/{MANIFEST_NAME}")
        if not self._fs.exists(manifest_path):
            raise DatasetNotFound(f"dataset {name!r} has no committed version {version!r} in {self.url}")
        self._fs.rm_file(manifest_path)
        self._remove_tree(self._path(vdir))
        log.info("lake.version_deleted", dataset=name, version=version)

    def dataset_files(
        self,
        name: str,
        *,
        version: str = LATEST,
        symbols: Sequence[str] | str | None = None,
        start: TimestampLike | None = None,
        end: TimestampLike | None = None,
    ) -> list[str]:
        """URIs of the data files a read with these filters opens (partition pruning by the manifest)."""
        meta = self.manifest(name, version)
        return [
            self.uri(f"{version_dir(meta.name, meta.version)}/{e.path}")
            for e in self._select(meta, symbols, start, end)[0]
        ]

    def _select(
        self,
        meta: StorageMetadata,
        symbols: Sequence[str] | str | None,
        start: TimestampLike | None,
        end: TimestampLike | None,
    ) -> tuple[list[FileEntry], pd.Timestamp | None, pd.Timestamp | None]:
        lo = None if start is None else to_utc_timestamp(start, what="start")
        hi = None if end is None else to_utc_timestamp(end, what="end")
        if lo is not None and hi is not None and lo >= hi:
            raise LayoutError(f"start={lo} is not before end={hi} (start is inclusive, end exclusive)")
        wanted: set[str] | None = None
        if symbols is not None:
            wanted = {symbols} if isinstance(symbols, str) else set(symbols)
            bad = [s for s in wanted if not isinstance(s, str)]
            if bad:
                raise LayoutError(f"symbols must be strings, got {bad!r}")
        entries = [e for e in meta.file_entries if (wanted is None or e.symbol in wanted) and e.overlaps(lo, hi)]
        return entries, lo, hi

    def read_dataset(
        self,
        name: str,
        *,
        version: str = LATEST,
        symbols: Sequence[str] | str | None = None,
        start: TimestampLike | None = None,
        end: TimestampLike | None = None,
        columns: Sequence[str] | None = None,
        verify: bool | Literal["sha256"] = True,
    ) -> pd.DataFrame:
        """Rows of one version, sorted by (symbol, time); ``start`` inclusive, ``end`` exclusive (UTC).

        Only the files of the selected symbols and time buckets are opened, and inside them only the row
        groups whose statistics overlap the range. ``columns`` always keeps the symbol and time columns.
        Every file read is checked against the size and CRC-32 its manifest recorded before it is decoded
        (sha256 for manifests without CRC-32; ``verify="sha256"`` always checks sha256, for audits), and a
        mismatch raises :class:`DatasetCorrupted` naming the dataset, version and file. ``verify=False``
        skips that, and then lets Parquet read only the row groups a filter needs instead of whole files.
        """
        meta = self.manifest(name, version)
        entries, lo, hi = self._select(meta, symbols, start, end)
        tc = meta.time_column
        if columns is not None:
            if isinstance(columns, str):
                raise LayoutError(f"columns must be a list of names, got the string {columns!r}: wrap it in [...]")
            unknown = [c for c in columns if c not in meta.schema]
            if unknown:
                raise LayoutError(
                    f"unknown column(s) {unknown} in {name!r} {meta.version!r}; available: {list(meta.schema)}"
                )
            wanted = {*columns, tc, SYMBOL_COLUMN}
            selected: list[str] | None = [c for c in meta.schema if c in wanted]
        else:
            selected = None

        condition = None
        if lo is not None:
            condition = pc.field(tc) >= pa.scalar(lo, type=pa.timestamp("ns", tz="UTC"))
        if hi is not None:
            upper = pc.field(tc) < pa.scalar(hi, type=pa.timestamp("ns", tz="UTC"))
            condition = upper if condition is None else condition & upper
        vdir = version_dir(meta.name, meta.version)

        def read_one(index: int) -> pa.Table:
            entry = entries[index]
            path = self._path(f"{vdir}/{entry.path}")
            try:
                if verify:
                    data = self._fs.cat_file(path)
                    _check_file(entry, bytes(data), meta, strong=verify == "sha256")
                    return pq.read_table(pa.BufferReader(data), columns=selected, filters=condition)
                with self._fs.open(path, "rb") as handle:
                    return pq.read_table(handle, columns=selected, filters=condition)
            except FileNotFoundError:
                raise DatasetNotFound(
                    f"data file {entry.path} of {meta.name!r} {meta.version!r} is gone (the version was overwritten "
                    "or deleted while reading); read again"
                ) from None

        if not entries:
            full = empty_schema(meta)
            keep = [f.name for f in full if selected is None or f.name in selected]
            return full.empty_table().select(keep).to_pandas()
        tables = self._map_io(read_one, range(len(entries)))
        frame = pa.concat_tables(tables).to_pandas()
        log.debug("lake.read", dataset=name, version=meta.version, files=len(entries), rows=len(frame))
        return frame


@dataclass(frozen=True)
class _FilePlan:
    """How a normalised frame splits into files (same for every write of the same frame)."""

    slices: Sequence[Any]
    table: pa.Table
    partition_paths: tuple[str, ...]

    def checksum(self) -> str:
        entries = [
            FileEntry(
                path=path,
                symbol=slice_.symbol,
                rows=slice_.stop - slice_.start,
                size_bytes=0,
                sha256=hashlib.sha256(
                    parquet_bytes(self.table.slice(slice_.start, slice_.stop - slice_.start))
                ).hexdigest(),
                start=pd.Timestamp(0, tz="UTC"),
                end=pd.Timestamp(0, tz="UTC"),
            )
            for slice_, path in zip(self.slices, self.partition_paths, strict=True)
        ]
        return content_checksum(entries, "")


def _plan_files(frame: pd.DataFrame, *, time_column: str, time_partition: TimePartition | None) -> _FilePlan:
    slices = plan_partitions(
        frame, time_column=time_column, time_partition=time_partition, max_rows_per_file=MAX_ROWS_PER_FILE
    )
    paths: list[str] = []
    part = 0
    for index, slice_ in enumerate(slices):
        same_partition = index > 0 and (slices[index - 1].symbol, slices[index - 1].bucket) == (
            slice_.symbol,
            slice_.bucket,
        )
        part = part + 1 if same_partition else 0
        paths.append(partition_path(slice_, time_partition=time_partition, part=part))
    return _FilePlan(slices=slices, table=arrow_table(frame), partition_paths=tuple(paths))


def _check_file(entry: FileEntry, data: bytes, meta: StorageMetadata, *, strong: bool) -> None:
    if len(data) != entry.size_bytes:
        expected, found = f"{entry.size_bytes} bytes", f"{len(data)} bytes"
    elif entry.crc32 is not None and not strong:
        crc = zlib.crc32(data)
        if crc == entry.crc32:
            return
        expected, found = f"CRC-32 {entry.crc32:08x}", f"CRC-32 {crc:08x}"
    else:
        digest = hashlib.sha256(data).hexdigest()
        if digest == entry.sha256:
            return
        expected, found = f"sha256 {entry.sha256}", f"sha256 {digest}"
    raise DatasetCorrupted(
        f"dataset {meta.name!r} version {meta.version!r}: file {entry.path} does not match its manifest "
        f"(expected {expected}, found {found}) at {meta.location}; "
        "the data was changed after commit: do not use it, rewrite the version from its source "
        "(overwrite=True) or restore the file from a backup"
    )


def _exists_message(name: str, version: str, url: str, *, concurrent: bool) -> str:
    when = "was committed by another writer while this one was writing" if concurrent else "is already committed"
    return (
        f"dataset {name!r} version {version!r} {when} in {url}; versions are immutable: write a new version "
        "(e.g. a date or run id suffix). overwrite=True replaces the data every reader of this version sees "
        "and breaks the checksum recorded for it (e.g. in the catalog): use it only to repair a version "
        "from its source"
    )
