"""Alembic environment for the data catalog; run from code by DataCatalog (no alembic.ini).

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]`` so the
migration runs inside the caller's lock (Postgres advisory lock) and transaction.
"""

from __future__ import annotations

from alembic import context
from qframe.research.data_lake.catalog_models import VERSION_TABLE, metadata
from sqlalchemy.engine import Connection


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the catalog migrations run from DataCatalog(db_url, migrate=True), which passes a connection; "
        "there is no alembic.ini for the command line"
    )
run_migrations(connection)
