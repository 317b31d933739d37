"""Recorder, Inventory and Outbox against a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.database import BUSY_TIMEOUT_MS, open_database, transaction
from edge.errors import EdgeError, NotInFridge, StorageError
from edge.outbox import Outbox
from edge.recorder import Recorder
from edge.scanner import Scan
from shared.clock import ManualClock
from shared.messages import ItemAdded, ItemRemoved, decode_event

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEVICE = "fridge-1"
MILK = "2000000000015"
EGGS = "2000000000039"


def add(code: str) -> Scan:
    return Scan(code=code, delta=1)


def remove(code: str) -> Scan:
    return Scan(code=code, delta=-1)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "edge.db"


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(db_path)
    yield connection
    connection.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def recorder(conn: sqlite3.Connection, clock: ManualClock) -> Recorder:
    return Recorder(conn, DEVICE, clock)


def _fill(recorder: Recorder, count: int) -> None:
    for i in range(count):
        recorder.record(add(f"P{i}"))


# database -----------------------------------------------------------------------------------


def test_open_database_creates_parent_dir_and_file(db_path: Path, conn: sqlite3.Connection) -> None:
    assert db_path.is_file()
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "inventory", "outbox"}


def test_durable_pragmas(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS == 10_000


def test_connection_is_in_autocommit_mode(conn: sqlite3.Connection) -> None:
    assert conn.isolation_level is None
    assert not conn.in_transaction


def test_open_database_that_is_not_sqlite_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(StorageError, match="check the data directory") as info:
        open_database(path)
    assert isinstance(info.value, EdgeError)
    assert isinstance(info.value, OSError)


def test_transaction_rolls_back_on_error(conn: sqlite3.Connection) -> None:
    def insert_then_fail() -> None:
        with transaction(conn):
            conn.execute("INSERT INTO inventory (code, quantity) VALUES ('X', 1)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert conn.execute("SELECT COUNT(*) FROM inventory").fetchone()[0] == 0
    assert not conn.in_transaction


# recorder and inventory -------------------------------------------------------------------------


def test_record_add(recorder: Recorder) -> None:
    event = recorder.record(add(MILK))
    assert isinstance(event, ItemAdded)
    assert (event.device_id, event.seq, event.code, event.quantity) == (DEVICE, 1, MILK, 1)
    assert event.occurred_at == T0
    assert recorder.inventory.quantity(MILK) == 1
    assert recorder.inventory.snapshot() == {MILK: 1}
    assert recorder.outbox.depth() == 1
    assert recorder.outbox.last_seq() == 1


def test_record_add_and_remove(recorder: Recorder, clock: ManualClock) -> None:
    recorder.record(add(MILK))
    recorder.record(add(MILK))
    recorder.record(add(EGGS))
    clock.advance(timedelta(minutes=5))
    event = recorder.record(remove(MILK))
    assert isinstance(event, ItemRemoved)
    assert (event.seq, event.code, event.quantity) == (4, MILK, 1)
    assert event.occurred_at == T0 + timedelta(minutes=5)
    assert recorder.inventory.quantity(MILK) == 1
    assert recorder.inventory.snapshot() == {EGGS: 1, MILK: 1}
    recorder.record(remove(MILK))
    assert recorder.inventory.quantity(MILK) == 0
    # Products down to zero drop out of the snapshot.
    assert recorder.inventory.snapshot() == {EGGS: 1}
    assert recorder.outbox.depth() == 5


def test_quantity_of_unknown_code_is_zero(recorder: Recorder) -> None:
    assert recorder.inventory.quantity("never-seen") == 0
    assert recorder.inventory.snapshot() == {}


def test_removing_absent_product_records_nothing(recorder: Recorder) -> None:
    recorder.record(add(EGGS))
    with pytest.raises(NotInFridge, match=f"{MILK} is not in the fridge") as info:
        recorder.record(remove(MILK))
    assert info.value.code == MILK
    assert isinstance(info.value, LookupError)
    assert recorder.outbox.depth() == 1
    assert recorder.outbox.last_seq() == 1
    assert recorder.inventory.snapshot() == {EGGS: 1}
    # The next event takes the next number: no gap for the refused removal.
    assert recorder.record(add(MILK)).seq == 2


def test_removing_more_than_present_records_nothing(recorder: Recorder) -> None:
    recorder.record(add(MILK))
    recorder.record(remove(MILK))
    with pytest.raises(NotInFridge):
        recorder.record(remove(MILK))
    assert recorder.outbox.depth() == 2
    assert recorder.outbox.last_seq() == 2
    assert recorder.inventory.quantity(MILK) == 0


def test_failed_append_rolls_back_inventory_and_seq(recorder: Recorder, conn: sqlite3.Connection) -> None:
    # A stray row under the next seq makes the outbox insert fail after the inventory changed.
    conn.execute("INSERT INTO outbox (seq, payload, created_at) VALUES (1, x'00', 'x')")
    with pytest.raises(sqlite3.IntegrityError):
        recorder.record(add(MILK))
    assert recorder.inventory.quantity(MILK) == 0
    assert recorder.outbox.last_seq() == 0
    assert not conn.in_transaction


def test_seq_increases_without_gaps(recorder: Recorder) -> None:
    seqs = [recorder.record(add(MILK)).seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert recorder.outbox.last_seq() == 3
    assert [seq for seq, _ in recorder.outbox.pending(after=0, limit=10)] == [1, 2, 3]


def test_seq_and_state_survive_reopening(db_path: Path, clock: ManualClock) -> None:
    first = open_database(db_path)
    try:
        recorder = Recorder(first, DEVICE, clock)
        assert [recorder.record(add(MILK)).seq for _ in range(3)] == [1, 2, 3]
        recorder.outbox.acknowledge([(1, 3)])
        assert recorder.outbox.depth() == 0
    finally:
        first.close()
    second = open_database(db_path)
    try:
        recorder = Recorder(second, DEVICE, clock)
        assert recorder.outbox.last_seq() == 3
        assert recorder.inventory.quantity(MILK) == 3
        # Acknowledged events are gone, but their numbers are never reused.
        assert recorder.record(remove(MILK)).seq == 4
        assert [seq for seq, _ in recorder.outbox.pending(after=0, limit=10)] == [4]
    finally:
        second.close()


def test_two_recorders_on_one_file_share_the_sequence(db_path: Path, clock: ManualClock) -> None:
    a, b = open_database(db_path), open_database(db_path)
    try:
        assert Recorder(a, DEVICE, clock).record(add(MILK)).seq == 1
        assert Recorder(b, DEVICE, clock).record(add(MILK)).seq == 2
        assert Recorder(a, DEVICE, clock).inventory.quantity(MILK) == 2
    finally:
        a.close()
        b.close()


def test_stored_payload_decodes_to_the_returned_event(recorder: Recorder, clock: ManualClock) -> None:
    added = recorder.record(add(MILK))
    clock.advance(timedelta(seconds=90))
    removed = recorder.record(remove(MILK))
    pending = recorder.outbox.pending(after=0, limit=10)
    assert [seq for seq, _ in pending] == [1, 2]
    assert decode_event(pending[0][1]) == added
    assert decode_event(pending[1][1]) == removed
    assert added.event_id != removed.event_id


def test_outbox_created_at_is_the_clock_time(recorder: Recorder, conn: sqlite3.Connection) -> None:
    recorder.record(add(MILK))
    assert conn.execute("SELECT created_at FROM outbox WHERE seq = 1").fetchone()[0] == T0.isoformat()


# outbox -----------------------------------------------------------------------------------------


def test_pending_order_after_and_limit(recorder: Recorder) -> None:
    _fill(recorder, 6)
    outbox = recorder.outbox
    assert [seq for seq, _ in outbox.pending(after=0, limit=100)] == [1, 2, 3, 4, 5, 6]
    assert [seq for seq, _ in outbox.pending(after=0, limit=2)] == [1, 2]
    assert [seq for seq, _ in outbox.pending(after=2, limit=3)] == [3, 4, 5]
    assert [seq for seq, _ in outbox.pending(after=5, limit=3)] == [6]
    assert outbox.pending(after=6, limit=3) == []
    assert outbox.pending(after=0, limit=0) == []
    assert all(isinstance(payload, bytes) for _, payload in outbox.pending(after=0, limit=100))


def test_pending_skips_acknowledged_gaps(recorder: Recorder) -> None:
    _fill(recorder, 6)
    recorder.outbox.acknowledge([(2, 3)])
    assert [seq for seq, _ in recorder.outbox.pending(after=1, limit=2)] == [4, 5]


def test_acknowledge_removes_exactly_the_ranges(recorder: Recorder) -> None:
    _fill(recorder, 10)
    outbox = recorder.outbox
    assert outbox.acknowledge([(2, 4), (7, 7), (9, 12)]) == 6
    assert [seq for seq, _ in outbox.pending(after=0, limit=100)] == [1, 5, 6, 8]
    assert outbox.depth() == 4
    # Acknowledging again (a repeated ack) removes nothing.
    assert outbox.acknowledge([(2, 4)]) == 0
    assert outbox.acknowledge([]) == 0
    assert outbox.depth() == 4
    assert outbox.acknowledge([(1, 10)]) == 4
    assert outbox.depth() == 0
    assert outbox.last_seq() == 10
    # The inventory is not touched by acknowledgements.
    assert len(recorder.inventory.snapshot()) == 10


def test_acknowledge_outside_the_outbox_removes_nothing(recorder: Recorder) -> None:
    _fill(recorder, 3)
    assert recorder.outbox.acknowledge([(4, 100)]) == 0
    assert recorder.outbox.depth() == 3


def test_empty_outbox(conn: sqlite3.Connection) -> None:
    outbox = Outbox(conn)
    assert outbox.depth() == 0
    assert outbox.last_seq() == 0
    assert outbox.pending(after=0, limit=10) == []
