"""Data catalog: which dataset versions exist, what they hold, where they live and what they came from.

SQLAlchemy Core over PostgreSQL in the cluster (``postgresql+psycopg://...``) or SQLite on a laptop
(``sqlite:///path``). Tables are created by the Alembic migrations shipped in this package
(``DataCatalog(url, migrate=True)`` runs ``upgrade head``; idempotent, serialised by a Postgres advisory
lock, retried on SQLite lock races).

One registration is one transaction (dataset row, tags, symbols, lineage edges); the unique constraint on
(name, version) makes concurrent registrations of the same version end with exactly one winner and a
:class:`DatasetAlreadyRegistered` for the others. The async methods run the sync code in a worker thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import pandas as pd
import structlog
from alembic import command
from alembic.config import Config
from qframe.research.data_lake import catalog_models as m
from qframe.research.data_lake.storage_layout import (
    LATEST,
    LayoutError,
    StorageMetadata,
    TimestampLike,
    check_dataset_name,
    check_version,
    to_utc_timestamp,
)
from qframe.research.redaction import redact, remember_secrets_in_url
from qframe.research.threaded import in_thread
from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection, RowMapping, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool

__all__ = [
    "CatalogError",
    "CatalogUnavailable",
    "DataCatalog",
    "DataQuality",
    "DatasetAlreadyRegistered",
    "DatasetMetadata",
    "DatasetNotRegistered",
    "DatasetRef",
    "DatasetType",
    "IncompleteRegistration",
]

log = structlog.get_logger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same for every process migrating this catalog.
_MIGRATION_LOCK_ID: Final = 0x51F4A3E0
_SQLITE_MIGRATION_ATTEMPTS: Final = 5
_SQLITE_BUSY_TIMEOUT_S: Final = 30.0
# Tag fsck sets on a registration whose lake data is gone or differs (see mark_problem_sync).
PROBLEM_TAG: Final = "fsck.problem"
# Seconds a Postgres connect may take before the catalog counts as unreachable (libpq waits forever by default).
_PG_CONNECT_TIMEOUT_S: Final = 10
_P = ParamSpec("_P")
_R = TypeVar("_R")


class DatasetType(StrEnum):
    RAW_MARKET_DATA = "raw_market_data"
    FEATURES = "features"
    BACKTEST_RESULTS = "backtest_results"
    ALTERNATIVE_DATA = "alternative_data"


class DataQuality(StrEnum):
    RAW = "raw"
    VALIDATED = "validated"
    CURATED = "curated"
    QUARANTINED = "quarantined"


class CatalogError(Exception):
    """Base class of catalog errors; messages name the dataset and the fix."""


class CatalogUnavailable(CatalogError):  # noqa: N818 - reads like its siblings
    """The catalog database cannot be reached (down, refusing connections, locked); rerunning is safe."""


class DatasetAlreadyRegistered(CatalogError):  # noqa: N818 - contract name
    """That (name, version) is registered already (versions are immutable)."""


class DatasetNotRegistered(CatalogError, LookupError):  # noqa: N818 - contract name
    """No such dataset, or no such version of it."""


class InvalidRegistration(CatalogError, ValueError):  # noqa: N818 - reads like its siblings
    """A registration argument is malformed; nothing was written."""


class IncompleteRegistration(InvalidRegistration, TypeError):  # noqa: N818 - reads like its siblings
    """A registration lacks what only the stored data can tell (location, checksum, row count, version).

    A TypeError too: it is a call of the wrong shape, as Python's own missing-argument error would be.
    """


def _replacement_call(
    name: str,
    *,
    missing: Sequence[str],
    dataset_type: DatasetType | str,
    quality_level: DataQuality | str,
    tags: Mapping[str, str] | None,
    version: str,
) -> str:
    """The message for a registration without its data's facts: the exact call that computes them."""
    shown, renamed = name, ""
    try:
        check_dataset_name(name)
    except LayoutError:
        with contextlib.suppress(LayoutError):
            check_dataset_name(name.lower())
            shown, renamed = name.lower(), f" (dataset names are lowercase: {name.lower()!r})"
    kind = f"DatasetType.{DatasetType(dataset_type).name}" if dataset_type in set(DatasetType) else repr(dataset_type)
    quality = (
        f"DataQuality.{DataQuality(quality_level).name}" if quality_level in set(DataQuality) else repr(quality_level)
    )
    tagged = f", tags={dict(tags)!r}" if tags else ""
    call = (
        f"catalog.register_manifest_sync(storage.write_dataset({shown!r}, df, version={version!r}), "
        f"dataset_type={kind}, quality_level={quality}{tagged})"
    )
    return (
        f"register_dataset({name!r}, ...) lacks {', '.join(missing)}: a catalog entry describes stored data, and "
        "only the data can tell its location, checksum, row count, schema, symbols and time range. Write your "
        f"DataFrame df to the lake and register what was written in one call{renamed}: `{call}` "
        "(async: await catalog.register_manifest(...) with the same arguments)"
    )


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str


@dataclass(frozen=True)
class DatasetMetadata:
    name: str
    version: str
    dataset_type: DatasetType
    quality_level: DataQuality
    schema: dict[str, str]
    tags: dict[str, str]
    symbols: tuple[str, ...]
    row_count: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    location: str
    checksum: str
    description: str
    created_at: pd.Timestamp
    derived_from: tuple[DatasetRef, ...]

    @property
    def ref(self) -> DatasetRef:
        return DatasetRef(self.name, self.version)


def normalise_db_url(db_url: str) -> str:
    """``postgresql://`` (the seed's form) means psycopg 3 here: psycopg2 is not a dependency."""
    if db_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db_url.split("://", 1)[1]
    return db_url


def _make_engine(db_url: str) -> Engine:
    try:
        url = make_url(normalise_db_url(db_url))
    except Exception:
        raise CatalogError(
            f"catalog URL {redact(db_url)!r} is not a SQLAlchemy URL; use sqlite:///path/catalog.db or "
            "postgresql+psycopg://user:password@host:5432/db"
        ) from None
    if url.get_backend_name() == "sqlite":
        in_memory = url.database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            poolclass=StaticPool if in_memory else None,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S})
    raise CatalogError(
        f"catalog URL {redact(db_url)!r}: unsupported database {url.get_backend_name()!r}; use sqlite or "
        "postgresql+psycopg"
    )


def _db_reason(exc: BaseException) -> str:
    """The driver's own first line (e.g. 'connection refused'), without SQLAlchemy's SQL and link, redacted."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return redact(lines[0] if lines else type(orig).__name__)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _translate_outage(action: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Turns a lost or refused database connection into :class:`CatalogUnavailable` naming the catalog and fix."""

    def wrap(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return func(*args, **kwargs)
            except DBAPIError as exc:
                if not _unreachable(exc):
                    raise
                catalog = args[0]
                raise CatalogUnavailable(
                    f"catalog {getattr(catalog, 'url', '?')} is unreachable ({_db_reason(exc)}) while trying to "
                    f"{action}; start the database or point QFRAME_CATALOG_URL / --catalog at a running one, "
                    "then run the same command again"
                ) from None

        return translated

    return wrap


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def run_migrations(engine: Engine) -> None:
    """``alembic upgrade head`` on the catalog tables; safe when several processes do it at once."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            # The session lock serialises concurrent migrators; the loser then finds head and does nothing.
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            try:
                command.upgrade(_alembic_config(connection), "head")
                connection.commit()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                connection.commit()
        return
    with _sqlite_migration_lock(engine.url.database):
        for attempt in range(1, _SQLITE_MIGRATION_ATTEMPTS + 1):
            try:
                with engine.begin() as connection:
                    command.upgrade(_alembic_config(connection), "head")
                return
            except OperationalError as exc:
                # Without the file lock (no fcntl), migrators race on "table exists"; the retry then sees head.
                if attempt == _SQLITE_MIGRATION_ATTEMPTS:
                    raise CatalogError(
                        f"catalog migration failed after {attempt} attempts: {_db_reason(exc)}"
                    ) from None
                time.sleep(0.2 * attempt)


@contextmanager
def _sqlite_migration_lock(database: str | None) -> Iterator[None]:
    """An exclusive lock file next to a SQLite catalog, held while migrating (POSIX hosts)."""
    if not database or database == ":memory:":
        yield
        return
    try:
        import fcntl  # noqa: PLC0415 - POSIX only; elsewhere the retry loop covers the race
    except ImportError:
        yield
        return
    lock_path = Path(database).expanduser().resolve().with_name(Path(database).name + ".migrate-lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ts_to_ns(value: pd.Timestamp | None) -> int | None:
    return None if value is None else int(value.value)


def _ns_to_ts(value: int | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value, unit="ns", tz="UTC")


def _enum(enum_type: type[DatasetType] | type[DataQuality], value: str, what: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum_type)
        raise InvalidRegistration(f"{what}={value!r} is not one of: {allowed}") from None


def _str_map(value: Mapping[str, str] | None, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRegistration(f"{what} must be a mapping of str to str, got {type(value).__name__}")
    bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str) or not k]
    if bad:
        raise InvalidRegistration(f"{what} must map non-empty str keys to str values; bad keys: {bad!r}")
    return dict(value)


@dataclass(frozen=True)
class _Registration:
    """A checked registration, ready to insert."""

    name: str
    version: str
    dataset_type: DatasetType
    quality_level: DataQuality
    schema: dict[str, str]
    location: str
    checksum: str
    row_count: int
    tags: dict[str, str]
    symbols: tuple[str, ...]
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    description: str
    derived_from: tuple[DatasetRef, ...]


def _same_registration(existing: DatasetMetadata, reg: _Registration) -> bool:
    """Whether ``reg`` asks for exactly what is registered (a retry), so it can succeed without a second row."""
    parents = [(r.name, r.version) for r in existing.derived_from]
    wanted = [(r.name, r.version) for r in reg.derived_from]
    same_parents = (
        sorted(parents) == sorted(set(wanted))
        if all(v != LATEST for _, v in wanted)
        else sorted({n for n, _ in parents}) == sorted({n for n, _ in wanted})
    )
    return (
        existing.checksum == reg.checksum
        and existing.location == reg.location
        and existing.row_count == reg.row_count
        and existing.dataset_type == reg.dataset_type
        and existing.quality_level == reg.quality_level
        and existing.schema == reg.schema
        and existing.tags == reg.tags
        and existing.symbols == reg.symbols
        and existing.start == reg.start
        and existing.end == reg.end
        and existing.description == reg.description
        and same_parents
    )


def _check_registration(
    name: str,
    *,
    version: str,
    dataset_type: DatasetType | str,
    quality_level: DataQuality | str,
    schema: Mapping[str, str],
    location: str,
    checksum: str,
    row_count: int,
    tags: Mapping[str, str] | None,
    symbols: Sequence[str],
    start: TimestampLike | None,
    end: TimestampLike | None,
    description: str,
    derived_from: Sequence[DatasetRef],
) -> _Registration:
    try:
        check_dataset_name(name)
        check_version(version)
        lo = None if start is None else to_utc_timestamp(start, what="start")
        hi = None if end is None else to_utc_timestamp(end, what="end")
    except LayoutError as exc:
        raise InvalidRegistration(str(exc)) from None
    if lo is not None and hi is not None and lo > hi:
        raise InvalidRegistration(f"start={lo} is after end={hi}")
    if isinstance(row_count, bool) or not isinstance(row_count, int) or row_count < 0:
        raise InvalidRegistration(f"row_count={row_count!r} must be a non-negative int")
    if not isinstance(location, str) or not location:
        raise InvalidRegistration("location must be the URI of the stored data, e.g. s3://bucket/datasets/x/v1")
    if not isinstance(checksum, str) or not checksum:
        raise InvalidRegistration("checksum must be a non-empty string such as 'sha256:<hex>'")
    if isinstance(symbols, str):
        raise InvalidRegistration(f"symbols must be a list of strings, got the string {symbols!r}: wrap it in [...]")
    bad_symbols = [s for s in symbols if not isinstance(s, str) or not s]
    if bad_symbols:
        raise InvalidRegistration(f"symbols must be non-empty strings; bad: {bad_symbols!r}")
    refs = tuple(derived_from)
    bad_refs = [r for r in refs if not isinstance(r, DatasetRef)]
    if bad_refs:
        raise InvalidRegistration(f"derived_from takes DatasetRef(name, version) items; bad: {bad_refs!r}")
    return _Registration(
        name=name,
        version=version,
        dataset_type=_enum(DatasetType, dataset_type, "dataset_type"),
        quality_level=_enum(DataQuality, quality_level, "quality_level"),
        schema=_str_map(schema, "schema"),
        location=location,
        checksum=checksum,
        row_count=row_count,
        tags=_str_map(tags, "tags"),
        symbols=tuple(sorted(set(symbols))),
        start=lo,
        end=hi,
        description=str(description),
        derived_from=refs,
    )


class DataCatalog:
    """Registry of dataset versions in SQLite or PostgreSQL."""

    def __init__(self, db_url: str, *, migrate: bool = True) -> None:
        remember_secrets_in_url(db_url)
        self._engine = _make_engine(db_url)
        self.url = redact(self._engine.url.render_as_string(hide_password=True))
        try:
            self._open(migrate=migrate)
        except BaseException:
            self._engine.dispose()
            raise

    @_translate_outage("open it")
    def _open(self, *, migrate: bool) -> None:
        if migrate:
            run_migrations(self._engine)
        elif not inspect(self._engine).has_table(m.datasets.name):
            raise CatalogError(
                f"catalog {self.url} has no catalog tables; create them with DataCatalog(url, migrate=True)"
            )

    def __repr__(self) -> str:
        return f"DataCatalog({self.url!r})"

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> DataCatalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- registration ------------------------------------------------------------------------------

    def register_dataset_sync(
        self,
        name: str,
        *,
        version: str | None = None,
        dataset_type: DatasetType | str,
        quality_level: DataQuality | str,
        schema: Mapping[str, str],
        location: str | None = None,
        checksum: str | None = None,
        row_count: int | None = None,
        tags: Mapping[str, str] | None = None,
        symbols: Sequence[str] = (),
        start: TimestampLike | None = None,
        end: TimestampLike | None = None,
        description: str = "",
        derived_from: Sequence[DatasetRef] = (),
    ) -> DatasetMetadata:
        """Registers one dataset version, all or nothing; DatasetAlreadyRegistered if it exists with other content.

        Idempotent: registering exactly what is registered already (a retry whose first answer was lost)
        returns the existing entry. A lost connection raises :class:`CatalogUnavailable`; the registration
        may or may not have committed, and running it again settles it either way.

        ``version``, ``location``, ``checksum`` and ``row_count`` describe stored data and are required; they
        default to None only so that a call without them (the architecture seed's shape) gets
        :class:`IncompleteRegistration` with the call that computes them from the data, instead of Python's
        bare "missing keyword-only arguments".
        """
        lacking = {"version": version, "location": location, "checksum": checksum, "row_count": row_count}
        missing = [key for key, value in lacking.items() if value is None]
        if version is None or location is None or checksum is None or row_count is None:
            raise IncompleteRegistration(
                _replacement_call(
                    name,
                    missing=missing,
                    dataset_type=dataset_type,
                    quality_level=quality_level,
                    tags=tags,
                    version=version or "v1",
                )
            )
        reg = _check_registration(
            name,
            version=version,
            dataset_type=dataset_type,
            quality_level=quality_level,
            schema=schema,
            location=location,
            checksum=checksum,
            row_count=row_count,
            tags=tags,
            symbols=symbols,
            start=start,
            end=end,
            description=description,
            derived_from=derived_from,
        )
        try:
            with self._engine.begin() as conn:
                parent_ids = [self._resolve_id(conn, ref) for ref in reg.derived_from]
                dataset_id = conn.execute(
                    m.datasets.insert()
                    .values(
                        name=reg.name,
                        version=reg.version,
                        dataset_type=reg.dataset_type.value,
                        quality_level=reg.quality_level.value,
                        schema_json=json.dumps(list(reg.schema.items())),
                        location=reg.location,
                        checksum=reg.checksum,
                        row_count=reg.row_count,
                        start_ns=_ts_to_ns(reg.start),
                        end_ns=_ts_to_ns(reg.end),
                        description=reg.description,
                        created_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
                    )
                    .returning(m.datasets.c.id)
                ).scalar_one()
                if reg.tags:
                    conn.execute(
                        m.tags.insert(), [{"dataset_id": dataset_id, "key": k, "value": v} for k, v in reg.tags.items()]
                    )
                if reg.symbols:
                    conn.execute(m.symbols.insert(), [{"dataset_id": dataset_id, "symbol": s} for s in reg.symbols])
                if parent_ids:
                    conn.execute(
                        m.lineage.insert(),
                        [{"child_id": dataset_id, "parent_id": p} for p in dict.fromkeys(parent_ids)],
                    )
        except IntegrityError as exc:
            if self._exists(reg.name, reg.version):
                existing = self.get_dataset_sync(reg.name, reg.version)
                if _same_registration(existing, reg):
                    log.info("catalog.already_registered_identical", dataset=reg.name, version=reg.version)
                    return existing
                raise DatasetAlreadyRegistered(
                    f"dataset {reg.name!r} version {reg.version!r} is already registered in {self.url}; versions are "
                    "immutable: register a new version"
                ) from None
            raise CatalogError(
                f"registration of {reg.name!r} {reg.version!r} failed, nothing written: {_db_reason(exc)}"
            ) from None
        log.info("catalog.registered", dataset=reg.name, version=reg.version, type=reg.dataset_type.value)
        return self.get_dataset_sync(reg.name, reg.version)

    register_dataset_sync = _translate_outage("register a dataset version (it may or may not be registered now)")(
        register_dataset_sync
    )
    register_dataset = in_thread(register_dataset_sync)

    def register_manifest_sync(
        self,
        manifest: StorageMetadata,
        *,
        dataset_type: DatasetType | str,
        quality_level: DataQuality | str,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        derived_from: Sequence[DatasetRef] = (),
    ) -> DatasetMetadata:
        """Registers a committed storage version with everything its manifest knows."""
        return self.register_dataset_sync(
            manifest.name,
            version=manifest.version,
            dataset_type=dataset_type,
            quality_level=quality_level,
            schema=manifest.schema,
            location=manifest.location,
            checksum=manifest.checksum,
            row_count=manifest.row_count,
            tags=tags,
            symbols=manifest.symbols,
            start=manifest.start,
            end=manifest.end,
            description=description,
            derived_from=derived_from,
        )

    register_manifest = in_thread(register_manifest_sync)

    # --- lookup ------------------------------------------------------------------------------------

    def _exists(self, name: str, version: str) -> bool:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(m.datasets.c.id).where(m.datasets.c.name == name, m.datasets.c.version == version)
            ).first()
        return row is not None

    def _resolve_id(self, conn: Connection, ref: DatasetRef) -> int:
        query = select(m.datasets.c.id).where(m.datasets.c.name == ref.name)
        if ref.version == LATEST:
            query = query.order_by(m.datasets.c.id.desc()).limit(1)
        else:
            query = query.where(m.datasets.c.version == ref.version)
        found = conn.execute(query).scalar_one_or_none()
        if found is None:
            known = conn.execute(
                select(m.datasets.c.version).where(m.datasets.c.name == ref.name).order_by(m.datasets.c.id)
            ).scalars()
            raise DatasetNotRegistered(
                f"dataset {ref.name!r} version {ref.version!r} is not registered in {self.url} "
                f"(registered versions: {list(known)}); register it first"
            )
        return int(found)

    def _load(self, conn: Connection, rows: Sequence[RowMapping]) -> list[DatasetMetadata]:
        ids = [int(row["id"]) for row in rows]
        if not ids:
            return []
        tag_map: dict[int, dict[str, str]] = {i: {} for i in ids}
        for tag in conn.execute(select(m.tags).where(m.tags.c.dataset_id.in_(ids))).mappings():
            tag_map[tag["dataset_id"]][tag["key"]] = tag["value"]
        symbol_map: dict[int, list[str]] = {i: [] for i in ids}
        for sym in conn.execute(select(m.symbols).where(m.symbols.c.dataset_id.in_(ids))).mappings():
            symbol_map[sym["dataset_id"]].append(sym["symbol"])
        parents = m.datasets.alias("parents")
        parent_map: dict[int, list[DatasetRef]] = {i: [] for i in ids}
        edges = conn.execute(
            select(m.lineage.c.child_id, parents.c.name, parents.c.version)
            .join(parents, parents.c.id == m.lineage.c.parent_id)
            .where(m.lineage.c.child_id.in_(ids))
            .order_by(parents.c.id)
        )
        for child_id, parent_name, parent_version in edges:
            parent_map[child_id].append(DatasetRef(parent_name, parent_version))
        result = []
        for row in rows:
            i = int(row["id"])
            created = pd.Timestamp(row["created_at"])
            result.append(
                DatasetMetadata(
                    name=row["name"],
                    version=row["version"],
                    dataset_type=DatasetType(row["dataset_type"]),
                    quality_level=DataQuality(row["quality_level"]),
                    schema={str(k): str(v) for k, v in json.loads(row["schema_json"])},
                    tags=tag_map[i],
                    symbols=tuple(sorted(symbol_map[i])),
                    row_count=int(row["row_count"]),
                    start=_ns_to_ts(row["start_ns"]),
                    end=_ns_to_ts(row["end_ns"]),
                    location=row["location"],
                    checksum=row["checksum"],
                    description=row["description"],
                    # SQLite drops the zone; every value was written in UTC.
                    created_at=created.tz_localize("UTC") if created.tzinfo is None else created.tz_convert("UTC"),
                    derived_from=tuple(parent_map[i]),
                )
            )
        return result

    @_translate_outage("look up a dataset version")
    def get_dataset_sync(self, name: str, version: str = LATEST) -> DatasetMetadata:
        with self._engine.connect() as conn:
            dataset_id = self._resolve_id(conn, DatasetRef(name, version))
            rows = conn.execute(select(m.datasets).where(m.datasets.c.id == dataset_id)).mappings().all()
            return self._load(conn, rows)[0]

    get_dataset = in_thread(get_dataset_sync)

    @_translate_outage("search datasets")
    def search_sync(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        dataset_type: DatasetType | str | None = None,
        symbol: str | None = None,
        name_prefix: str | None = None,
    ) -> list[DatasetMetadata]:
        """Every registered version matching all filters (all tags must match), in registration order."""
        query = select(m.datasets)
        for key, value in _str_map(tags, "tags").items():
            query = query.where(
                m.datasets.c.id.in_(select(m.tags.c.dataset_id).where(m.tags.c.key == key, m.tags.c.value == value))
            )
        if dataset_type is not None:
            query = query.where(m.datasets.c.dataset_type == _enum(DatasetType, dataset_type, "dataset_type").value)
        if symbol is not None:
            query = query.where(m.datasets.c.id.in_(select(m.symbols.c.dataset_id).where(m.symbols.c.symbol == symbol)))
        if name_prefix:
            query = query.where(m.datasets.c.name.startswith(name_prefix, autoescape=True))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(m.datasets.c.id)).mappings().all()
            return self._load(conn, rows)

    search = in_thread(search_sync)

    @_translate_outage("list dataset versions")
    def list_versions_sync(self, name: str) -> list[str]:
        """Registered versions of ``name`` in registration order (empty if none)."""
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    select(m.datasets.c.version).where(m.datasets.c.name == name).order_by(m.datasets.c.id)
                ).scalars()
            )

    @_translate_outage("count datasets")
    def count_sync(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(m.datasets)).scalar_one())

    # --- repair (qframe data fsck) -------------------------------------------------------------------

    @_translate_outage("remove a catalog entry")
    def remove_entry_sync(self, name: str, version: str) -> None:
        """Deletes one registration (tags, symbols, lineage edges to its parents) if nothing derives from it."""
        with self._engine.begin() as conn:
            dataset_id = self._resolve_id(conn, DatasetRef(name, version))
            children = conn.execute(select(func.count()).where(m.lineage.c.parent_id == dataset_id)).scalar_one()
            if children:
                raise CatalogError(
                    f"dataset {name!r} version {version!r} has {children} derived dataset(s); removing it would break "
                    "their lineage: mark it instead (mark_problem_sync)"
                )
            for table, column in ((m.tags, m.tags.c.dataset_id), (m.symbols, m.symbols.c.dataset_id)):
                conn.execute(table.delete().where(column == dataset_id))
            conn.execute(m.lineage.delete().where(m.lineage.c.child_id == dataset_id))
            conn.execute(m.datasets.delete().where(m.datasets.c.id == dataset_id))
        log.warning("catalog.entry_removed", dataset=name, version=version)

    @_translate_outage("mark a catalog entry")
    def mark_problem_sync(self, name: str, version: str, problem: str) -> None:
        """Quarantines one registration and records why in its ``fsck.problem`` tag (lineage stays intact)."""
        with self._engine.begin() as conn:
            dataset_id = self._resolve_id(conn, DatasetRef(name, version))
            conn.execute(
                m.datasets.update()
                .where(m.datasets.c.id == dataset_id)
                .values(quality_level=DataQuality.QUARANTINED.value)
            )
            conn.execute(m.tags.delete().where(m.tags.c.dataset_id == dataset_id, m.tags.c.key == PROBLEM_TAG))
            conn.execute(m.tags.insert(), [{"dataset_id": dataset_id, "key": PROBLEM_TAG, "value": problem[:500]}])
        log.warning("catalog.entry_quarantined", dataset=name, version=version, problem=problem)

    # --- lineage -----------------------------------------------------------------------------------

    @_translate_outage("walk lineage")
    def _walk(self, name: str, version: str, *, upstream: bool) -> list[DatasetRef]:
        """Breadth-first over lineage edges (nearest first); the visited set makes cycles harmless."""
        near, far = (
            (m.lineage.c.child_id, m.lineage.c.parent_id)
            if upstream
            else (
                m.lineage.c.parent_id,
                m.lineage.c.child_id,
            )
        )
        with self._engine.connect() as conn:
            start = self._resolve_id(conn, DatasetRef(name, version))
            visited = {start}
            frontier = [start]
            order: list[int] = []
            while frontier:
                found = conn.execute(select(far).where(near.in_(frontier)).order_by(far)).scalars().all()
                frontier = [i for i in dict.fromkeys(found) if i not in visited]
                visited.update(frontier)
                order.extend(frontier)
            return self._refs(conn, order)

    def _refs(self, conn: Connection, ids: Iterable[int]) -> list[DatasetRef]:
        ids = list(ids)
        if not ids:
            return []
        rows = conn.execute(
            select(m.datasets.c.id, m.datasets.c.name, m.datasets.c.version).where(m.datasets.c.id.in_(ids))
        )
        by_id = {row.id: DatasetRef(row.name, row.version) for row in rows}
        return [by_id[i] for i in ids]

    def lineage_sync(self, name: str, version: str) -> list[DatasetRef]:
        """Every dataset version this one was derived from, transitively, nearest first."""
        return self._walk(name, version, upstream=True)

    def downstream_sync(self, name: str, version: str) -> list[DatasetRef]:
        """Every dataset version derived from this one, transitively, nearest first."""
        return self._walk(name, version, upstream=False)
