"""SQLAlchemy Core tables of the data catalog (the Alembic migrations create them; this mirrors head).

Every table carries a ``catalog_`` prefix and Alembic keeps its own version table, so the catalog can
share a database with other tools (MLflow has its own ``tags`` table, for instance).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

VERSION_TABLE: Final = "catalog_alembic_version"
DATASET_UNIQUE: Final = "uq_catalog_datasets_name_version"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

datasets = Table(
    "catalog_datasets",
    metadata,
    # The id is the registration order: "latest" is the highest id of a name.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("dataset_type", String(32), nullable=False),
    Column("quality_level", String(32), nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("location", Text, nullable=False),
    Column("checksum", String(128), nullable=False),
    Column("row_count", BigInteger, nullable=False),
    # Nanoseconds since the epoch (UTC): exact for ns bars on every backend, unlike DATETIME.
    Column("start_ns", BigInteger, nullable=True),
    Column("end_ns", BigInteger, nullable=True),
    Column("description", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "version", name=DATASET_UNIQUE),
    Index("ix_catalog_datasets_dataset_type", "dataset_type"),
    sqlite_autoincrement=True,
)

tags = Table(
    "catalog_tags",
    metadata,
    Column("dataset_id", Integer, ForeignKey("catalog_datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_catalog_tags_key_value", "key", "value"),
)

symbols = Table(
    "catalog_symbols",
    metadata,
    Column("dataset_id", Integer, ForeignKey("catalog_datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("symbol", String(128), primary_key=True),
    Index("ix_catalog_symbols_symbol", "symbol"),
)

lineage = Table(
    "catalog_lineage",
    metadata,
    Column("child_id", Integer, ForeignKey("catalog_datasets.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_id", Integer, ForeignKey("catalog_datasets.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_catalog_lineage_parent_id", "parent_id"),
)
