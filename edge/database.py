"""The agent's local SQLite file: inventory, outbox and everything else the fridge keeps.

One file, so that recording a scan changes the inventory and appends its event in one transaction:
after a power cut either both happened or neither did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.errors import StorageError

# Wait this long for the other thread's write lock instead of failing at once.
BUSY_TIMEOUT_MS = 10_000
# Bumped with every change to _SCHEMA; `_migrate` brings older files up to date.
SCHEMA_VERSION = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    code                   TEXT PRIMARY KEY,
    name                   TEXT,
    unit                   TEXT NOT NULL DEFAULT 'unit',
    unit_grams             REAL,
    pack_size              REAL,
    shelf_life_days        INTEGER,
    opened_shelf_life_days INTEGER,
    perishable             INTEGER NOT NULL DEFAULT 1,
    location               TEXT NOT NULL DEFAULT 'fridge',
    known                  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT NOT NULL,
    quantity    REAL NOT NULL CHECK (quantity >= 0),
    unit        TEXT NOT NULL,
    location    TEXT NOT NULL,
    best_before TEXT,
    opened_at   TEXT,
    added_at    TEXT NOT NULL,
    order_id    TEXT,
    -- consumption kept back under consent without consumption detail, sent when the lot is finished
    withheld    REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS lots_by_code ON lots (code, quantity);
-- The lots in the fridge, without the years of finished ones: what the rules read every few seconds.
CREATE INDEX IF NOT EXISTS lots_held ON lots (code, id) WHERE quantity > 0;
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    payload    BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    payload    BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    subject TEXT PRIMARY KEY,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL,
    since   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offers (
    offer_id    TEXT PRIMARY KEY,
    payload     BLOB NOT NULL,
    received_at TEXT NOT NULL,
    answer      TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    order_id          TEXT PRIMARY KEY,
    status            TEXT NOT NULL,
    expected_delivery TEXT,
    updated_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_config (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL,
    settings TEXT NOT NULL
);
-- The device this folder belongs to, recorded at its first start (edge/datafolder.py): the
-- sequence numbers and unsent events here are that device's, and the cloud takes them from no other.
CREATE TABLE IF NOT EXISTS owner (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    since     TEXT NOT NULL
);
-- Devices this folder was handed over from, with the last seq each used and the copy of their data:
-- a device adopted back continues its numbering instead of repeating it.
CREATE TABLE IF NOT EXISTS former_owners (
    device_id TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    left_at   TEXT NOT NULL,
    copy      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    code     TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, code)
);
"""


def open_database(path: Path, *, power_safe: bool = True) -> sqlite3.Connection:
    """Open (creating or upgrading if needed) the agent's database with durable settings.

    Without ``power_safe`` commits are not flushed to the storage one by one (synchronous=NORMAL):
    a crash of the process loses nothing, a power cut may lose the last commits.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (see `transaction`), never implicit.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open the agent database {path}: {exc}; check the data directory") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed event survives a power cut (NORMAL may roll back the last commits).
        conn.execute(f"PRAGMA synchronous={'FULL' if power_safe else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys=ON")
        with transaction(conn):
            _migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot open the agent database {path}: {exc}; check the data directory") from exc
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    # executescript would commit the open transaction: run the statements one by one instead.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    if version < 2:
        has_old = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'inventory'").fetchone()
        if has_old:
            # Version 1 kept a count per code; each becomes one lot.
            conn.execute(
                "INSERT INTO lots (code, quantity, unit, location, added_at) "
                "SELECT code, quantity, 'unit', 'fridge', datetime('now') FROM inventory WHERE quantity > 0"
            )
            conn.execute("DROP TABLE inventory")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(products)")}
    if "pack_size" not in columns:  # version 3 and older
        conn.execute("ALTER TABLE products ADD COLUMN pack_size REAL")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block as one write transaction, taking the write lock at the start."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
