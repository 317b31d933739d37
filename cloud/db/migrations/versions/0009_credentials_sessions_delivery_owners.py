"""Credentials expire, web sign-ins become server-side sessions, webhook deliveries name their owner.

- ``access_tokens.expires_at`` and ``retailer_keys.expires_at``: every credential now has an end.
  Those made before get one 90 days after this migration, so an upgrade locks nobody out at once.
- ``web_sessions``: the web page's cookie holds an opaque session id (stored hashed here) instead of
  the bearer secret, so signing out or revoking the credential ends it.
- ``webhook_deliveries.household_id`` and ``order_id``: an erasure finds a household's deliveries by
  equality (it matched the payload with ``LIKE '%id%'``, which also caught ``hh-kitchen-2`` for
  ``hh-kitchen``). Filled in here from each delivery's payload (an order, under ``data``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# What credentials made before this migration get: time to issue new ones, and no surprise lockout.
GRACE = timedelta(days=90)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("retailer_key_id", sa.Integer(), nullable=True),
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["retailer_key_id"], ["retailer_keys.id"]),
        sa.ForeignKeyConstraint(["token_id"], ["access_tokens.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index("ix_web_sessions_retailer_key_id", "web_sessions", ["retailer_key_id"])
    op.create_index("ix_web_sessions_token_id", "web_sessions", ["token_id"])

    ends = datetime.now(UTC) + GRACE
    for table in ("access_tokens", "retailer_keys"):
        op.add_column(table, sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        op.execute(sa.table(table, sa.column("expires_at")).update().values(expires_at=ends))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)

    op.add_column(
        "webhook_deliveries",
        sa.Column("household_id", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    )
    op.add_column(
        "webhook_deliveries",
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_household_id", "webhook_deliveries", ["household_id"])
    op.create_index("ix_webhook_deliveries_order_id", "webhook_deliveries", ["order_id"])
    _fill_delivery_owners()


def _fill_delivery_owners() -> None:
    """Name each delivery's household and order, from its payload (every webhook so far is an order)."""
    deliveries = sa.table(
        "webhook_deliveries",
        sa.column("id"),
        sa.column("payload"),
        sa.column("household_id"),
        sa.column("order_id"),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(deliveries.c.id, deliveries.c.payload)).all()
    for delivery_id, payload in rows:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        # {"type": "order.created", "timestamp": ..., "data": {...the order...}}
        order_json = body.get("data") if isinstance(body, dict) else None
        if not isinstance(order_json, dict):
            continue
        household, order = order_json.get("household_id"), order_json.get("id")
        connection.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id)
            .values(
                household_id=household if isinstance(household, str) else None,
                order_id=order if isinstance(order, str) else None,
            )
        )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_order_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_household_id", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("order_id")
        batch.drop_column("household_id")
    for table in ("retailer_keys", "access_tokens"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("expires_at")
    op.drop_index("ix_web_sessions_token_id", table_name="web_sessions")
    op.drop_index("ix_web_sessions_retailer_key_id", table_name="web_sessions")
    op.drop_table("web_sessions")
