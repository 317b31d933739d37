"""Engine creation and the SQL that differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import SQLModel, create_engine

from cloud import models  # noqa: F401  (registers the tables)
from cloud.errors import ConfigurationError


def create_db_engine(url: str) -> Engine:
    """Return an engine for ``url`` with the settings Frigo relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # The cloud acknowledges after commit, so the commit must survive a power cut.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def create_schema(engine: Engine) -> None:
    """Create any missing tables."""
    SQLModel.metadata.create_all(engine)


def insert_ignoring_duplicates(engine: Engine, table: Any) -> Insert:
    """Return an INSERT that skips rows violating a unique key, on SQLite and PostgreSQL alike."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
