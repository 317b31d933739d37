"""Schema migrations with Alembic: `frigo cloud migrate`, and every worker at start.

Several workers may start at once: the upgrade runs under a lock (PostgreSQL's advisory lock; for
SQLite, a lock file beside the database), so one migrates and the others find the schema current.
Alembic's ``context`` and ``op`` are process globals, so threads of one process also take turns.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every worker.
_LOCK_ID = 0x46524947  # "FRIG"
# Before migrations existed, workers made the tables of revision 0001 with create_all.
_UNVERSIONED_REVISION = "0001"
_in_process = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision`` (the newest by default); return the revision it was at."""
    config = _config()
    with _in_process, _sqlite_file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        config.attributes["connection"] = connection
        before = MigrationContext.configure(connection).get_current_revision()
        if before is None and inspect(connection).has_table("events"):
            log.warning("database has tables but no revision; marking it as %s", _UNVERSIONED_REVISION)
            command.stamp(config, _UNVERSIONED_REVISION)
            before = _UNVERSIONED_REVISION
        command.upgrade(config, revision)
    return before


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive lock on DATABASE.migrate-lock; SQLite's DDL does not wait for a rival's."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def current(engine: Engine) -> str | None:
    """Return the database's revision, or None if it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """Return the newest revision this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a revision from the models' difference to ``engine``'s schema (developers)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
