"""`qframe status`: a read-only look at the session's settings and services.

Opening a session would create the workdir, the lake directory and a migrated SQLite catalog, so asking
"where is everything?" in a fresh directory used to leave a catalog and a lake behind. This probe only looks:
a missing lake or catalog is reported as such (the first write creates it), a database server that is down
is still one line with the fix (exit 1).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CREATED_ON_FIRST_WRITE = "absent (the first `qframe data generate|ingest` creates it)"


def lake_state(url: str, **options: Any) -> str:
    """Whether the lake exists; a URL the lake would refuse is refused here too (LayoutError, exit 2)."""
    from qframe.research.data_lake.storage import storage_from_url

    parts = urlsplit(url)
    local = parts.scheme in {"", "file"}
    raw_path = unquote(parts.path) if parts.scheme == "file" else url
    if local and parts.netloc in {"", "localhost"} and raw_path:
        return "present" if Path(raw_path).is_dir() else CREATED_ON_FIRST_WRITE
    # Only URL checks run here: a bad local URL is refused before any directory is made, and the object-store
    # client connects lazily (no request is sent).
    storage_from_url(url, **options)
    if parts.scheme == "memory":
        return "in memory (this process only)"
    return "not probed (remote object store)"


def catalog_state(url: str) -> str:
    from qframe.research.data_lake.catalog import CatalogError, DataCatalog, normalise_db_url
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(normalise_db_url(url))
    except Exception:
        raise CatalogError(
            f"catalog URL {url!r} is not a SQLAlchemy URL; use sqlite:///path/catalog.db or "
            "postgresql+psycopg://user:password@host:5432/db (--catalog or QFRAME_CATALOG_URL)"
        ) from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
        # Connecting would create the file.
        return CREATED_ON_FIRST_WRITE
    try:
        # migrate=False: look at the tables, never create or upgrade them.
        with DataCatalog(url, migrate=False) as catalog:
            return f"ready ({catalog.count_sync()} dataset versions)"
    except CatalogError as exc:
        if "has no catalog tables" not in str(exc):
            raise  # CatalogUnavailable: the server is down, one line and exit 1
        return "no catalog tables yet (the first write creates them)"


def probe(settings: Any) -> dict[str, Any]:
    """The status report of ``settings`` without creating or changing anything."""
    from qframe.research.backtesting.strategies import available_strategies
    from qframe.research.redaction import redact

    lake_url = settings.resolved_lake_url
    catalog_url = settings.resolved_catalog_url
    options = (
        {"endpoint_url": settings.s3_endpoint_url} if lake_url.startswith("s3://") and settings.s3_endpoint_url else {}
    )
    return {
        "qframe_core_available": importlib.util.find_spec("qframe.core") is not None,
        "workdir": str(settings.workdir.resolve()),
        "data_lake_backend": lake_url.split("://", 1)[0].replace("file", "local"),
        "data_lake_url": redact(lake_url),
        "data_lake": lake_state(lake_url, **options),
        "catalog_url": redact(catalog_url),
        "catalog": catalog_state(catalog_url),
        "strategies_discovered": len(available_strategies()),
        "strategies": available_strategies(),
        "compute_backend": settings.compute_backend,
        "compute_backends_installed": {
            name: importlib.util.find_spec(module) is not None
            for name, module in (("dask", "distributed"), ("ray", "ray"))
        },
        "mlflow_tracking_uri": redact(settings.resolved_tracking_uri),
    }
