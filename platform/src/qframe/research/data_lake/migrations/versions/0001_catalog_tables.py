"""Catalog tables: datasets (unique name+version), tags, symbols and lineage edges.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("dataset_type", sa.String(32), nullable=False),
        sa.Column("quality_level", sa.String(32), nullable=False),
        sa.Column("schema_json", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        sa.Column("row_count", sa.BigInteger, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=True),
        sa.Column("end_ns", sa.BigInteger, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalog_datasets"),
        sa.UniqueConstraint("name", "version", name="uq_catalog_datasets_name_version"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_catalog_datasets_dataset_type", "catalog_datasets", ["dataset_type"])
    op.create_table(
        "catalog_tags",
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "key", name="pk_catalog_tags"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["catalog_datasets.id"],
            name="fk_catalog_tags_dataset_id_catalog_datasets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_catalog_tags_key_value", "catalog_tags", ["key", "value"])
    op.create_table(
        "catalog_symbols",
        sa.Column("dataset_id", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "symbol", name="pk_catalog_symbols"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["catalog_datasets.id"],
            name="fk_catalog_symbols_dataset_id_catalog_datasets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_catalog_symbols_symbol", "catalog_symbols", ["symbol"])
    op.create_table(
        "catalog_lineage",
        sa.Column("child_id", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name="pk_catalog_lineage"),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["catalog_datasets.id"],
            name="fk_catalog_lineage_child_id_catalog_datasets",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["catalog_datasets.id"],
            name="fk_catalog_lineage_parent_id_catalog_datasets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_catalog_lineage_parent_id", "catalog_lineage", ["parent_id"])


def downgrade() -> None:
    op.drop_table("catalog_lineage")
    op.drop_table("catalog_symbols")
    op.drop_table("catalog_tags")
    op.drop_table("catalog_datasets")
