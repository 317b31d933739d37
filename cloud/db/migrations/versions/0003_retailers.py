"""Retailers: accounts, API keys (hashed), and their catalogs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "retailers",
        sa.Column("id", _text(64), nullable=False),
        sa.Column("name", _text(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "retailer_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retailer_id", _text(64), nullable=False),
        sa.Column("prefix", _text(16), nullable=False),
        sa.Column("key_hash", _text(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["retailer_id"], ["retailers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_retailer_keys_retailer_id", "retailer_keys", ["retailer_id"])
    op.create_table(
        "catalog_items",
        sa.Column("retailer_id", _text(64), nullable=False),
        sa.Column("gtin", _text(14), nullable=False),
        sa.Column("name", _text(200), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("currency", _text(3), nullable=False),
        sa.Column("pack_size", sa.Float(), nullable=False),
        sa.Column("unit", _text(8), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["retailer_id"], ["retailers.id"]),
        sa.PrimaryKeyConstraint("retailer_id", "gtin"),
    )


def downgrade() -> None:
    op.drop_table("catalog_items")
    op.drop_index("ix_retailer_keys_retailer_id", table_name="retailer_keys")
    op.drop_table("retailer_keys")
    op.drop_table("retailers")
