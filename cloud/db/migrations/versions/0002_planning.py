"""Planning: households' planning mode and last planned cycle, planned orders and their lines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("households") as table:
        table.add_column(
            sa.Column(
                "planning_mode",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="approve",
            )
        )
        table.add_column(sa.Column("planned_cycle", sa.Integer(), nullable=False, server_default="-1"))
    op.create_table(
        "planned_orders",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancellable_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_planned_orders_household_id", "planned_orders", ["household_id"])
    op.create_table(
        "planned_order_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("packs", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["planned_orders.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_planned_order_lines_order_id", "planned_order_lines", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_planned_order_lines_order_id", table_name="planned_order_lines")
    op.drop_table("planned_order_lines")
    op.drop_index("ix_planned_orders_household_id", table_name="planned_orders")
    op.drop_table("planned_orders")
    with op.batch_alter_table("households") as table:
        table.drop_column("planned_cycle")
        table.drop_column("planning_mode")
