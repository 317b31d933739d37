"""Ids never reused on SQLite: events and device commands get AUTOINCREMENT.

Without it SQLite gives a new row the id of the newest row deleted. An erasure deletes the
household's events and its fridges' pending commands: the answers cursor (cloud/commerce/answers.py) and the
live pages, which keep their place by event id, skipped the events stored next, and a dispatcher
that had read a deleted command marked the wipe that took its id as sent. PostgreSQL's sequences
never reuse ids; there this migration does nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("events", "device_commands")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # Copying the rows with their ids sets the table's sequence to the highest of them.
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
