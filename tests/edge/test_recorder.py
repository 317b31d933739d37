"""Recorder, Inventory, Outbox and the agent's database against a real SQLite file.

Time comes from a ManualClock; every test opens its own database under tmp_path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from edge.consent import ALL_CATEGORIES, Category, ConsentSettings
from edge.database import BUSY_TIMEOUT_MS, SCHEMA_VERSION, open_database, transaction
from edge.errors import EdgeError, NothingToDo, NotInFridge, StorageError
from edge.inventory import Inventory, Lot
from edge.outbox import Outbox
from edge.recorder import Recorder
from edge.scangrammar import Discard, Move, Open, Scan
from shared.clock import ManualClock
from shared.messages import (
    AlertCleared,
    AlertRaised,
    ConfigApplied,
    DataWiped,
    Event,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
    OfferAnswered,
    OfferSent,
    OrderAnswered,
    OrderLine,
    OrderUpdated,
    OutboxPressure,
    ProductInfo,
    TelemetryReported,
    decode_event,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIDNIGHT = datetime(2024, 5, 1, tzinfo=UTC)
DEVICE = "fridge-1"
MILK = "4006381333931"
EGGS = "96385074"
BUTTER = "036000291452"
CHEESE = "2000000000015"
ORDER = UUID("0e2b1c4a-5d6f-4a8b-9c0d-1e2f3a4b5c6d")
OTHER_ORDER = UUID("7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d")
OFFER = UUID("11111111-2222-4333-8444-555555555555")
OTHER_OFFER = UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")
WIPE = UUID("dddddddd-eeee-4fff-8000-111111111111")
EVERYTHING = ConsentSettings(share=ALL_CATEGORIES)


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
    """A recorder with the default consent: inventory and telemetry, no consumption detail."""
    return Recorder(conn, DEVICE, clock)


@pytest.fixture
def detailed(conn: sqlite3.Connection, clock: ManualClock) -> Recorder:
    """A recorder whose household shares everything, consumption detail included."""
    return Recorder(conn, DEVICE, clock, consent=EVERYTHING)


def outbox(recorder: Recorder) -> list[Event]:
    """Decode every event waiting in the outbox, in seq order."""
    return [decode_event(payload) for _, payload in recorder.outbox.pending(after=0, limit=100_000)]


def learn(conn: sqlite3.Connection, *products: ProductInfo) -> None:
    """Store catalog details, as a CatalogUpdated command does."""
    with transaction(conn):
        for info in products:
            Inventory(conn).learn(info)


def make_lot(
    conn: sqlite3.Connection,
    code: str,
    *,
    best_before: date | None = None,
    opened: bool = False,
    quantity: float = 1.0,
) -> int:
    """Put a lot with exactly these properties into the fridge, without an event."""
    inventory = Inventory(conn)
    with transaction(conn):
        lot_id = inventory.add_lot(code, quantity, "unit", "fridge", best_before, T0)
        if opened:
            inventory.open(lot_id, T0, best_before)
    return lot_id


def count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def sample(uptime_s: float = 0.0) -> TelemetryReported:
    return TelemetryReported(device_id=DEVICE, occurred_at=T0, outbox_depth=0, uptime_s=uptime_s)


def offer(offer_id: UUID, expires_at: datetime, title: str = "Milk -20%") -> OfferSent:
    return OfferSent(
        offer_id=offer_id,
        device_id=DEVICE,
        title=title,
        body="This week only.",
        explanation="You buy milk every week.",
        expires_at=expires_at,
    )


def order(
    order_id: UUID, status: str, *lines: tuple[str, int], expected_delivery: datetime | None = None
) -> OrderUpdated:
    return OrderUpdated(
        order_id=order_id,
        device_id=DEVICE,
        status=status,
        expected_delivery=expected_delivery,
        lines=tuple(OrderLine(code=code, quantity=quantity) for code, quantity in lines),
    )


# database -----------------------------------------------------------------------------------


def test_open_database_creates_parent_dir_and_every_table(db_path: Path, conn: sqlite3.Connection) -> None:
    assert db_path.is_file()
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {
        "meta",
        "products",
        "lots",
        "outbox",
        "telemetry",
        "alerts",
        "offers",
        "orders",
        "order_lines",
        "owner",
        "former_owners",
        "remote_config",
        "sqlite_sequence",  # AUTOINCREMENT: lot ids are never reused
    }
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


def test_durable_pragmas(conn: sqlite3.Connection) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS == 10_000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


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
            Inventory(conn).add_lot(MILK, 1, "unit", "fridge", None, T0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert count(conn, "lots") == 0
    assert not conn.in_transaction


def test_version_1_inventory_becomes_one_lot_per_code(db_path: Path, clock: ManualClock) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE inventory (code TEXT PRIMARY KEY, quantity INTEGER NOT NULL CHECK (quantity >= 0));
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL, created_at TEXT NOT NULL);
        INSERT INTO meta VALUES ('last_seq', 41);
        INSERT INTO inventory VALUES ('4006381333931', 3), ('96385074', 0), ('036000291452', 1);
        """
    )
    old.close()

    conn = open_database(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'inventory'").fetchone() is None
        recorder = Recorder(conn, DEVICE, clock)
        lots = recorder.inventory.lots()
        assert [(lot.code, lot.quantity, lot.unit, lot.location, lot.best_before) for lot in lots] == [
            (BUTTER, 1.0, "unit", "fridge", None),
            (MILK, 3.0, "unit", "fridge", None),
        ]
        # The sequence goes on from where version 1 left it.
        assert recorder.add(EGGS)[0].seq == 42
    finally:
        conn.close()
    # Opening again migrates nothing twice.
    again = open_database(db_path)
    try:
        assert Inventory(again).snapshot() == {BUTTER: 1.0, EGGS: 1.0, MILK: 3.0}
    finally:
        again.close()


# lots ----------------------------------------------------------------------------------------


def test_every_scan_in_is_a_lot_of_its_own(recorder: Recorder, clock: ManualClock) -> None:
    first = recorder.apply(Scan(code=MILK, delta=1))
    clock.advance(timedelta(minutes=1))
    second = recorder.apply(Scan(code=MILK, delta=1))
    assert len(first) == len(second) == 1
    a, b = first[0], second[0]
    assert isinstance(a, ItemAdded)
    assert isinstance(b, ItemAdded)
    assert (a.seq, a.lot_id, a.code, a.quantity, a.unit, a.location, a.best_before, a.order_id) == (
        1,
        1,
        MILK,
        1.0,
        "unit",
        "fridge",
        None,
        None,
    )
    assert (a.device_id, a.occurred_at) == (DEVICE, T0)
    assert (b.seq, b.lot_id, b.occurred_at) == (2, 2, T0 + timedelta(minutes=1))
    assert recorder.inventory.lots_of(MILK) == [
        Lot(1, MILK, 1.0, "unit", "fridge", None, None, T0, None, 0.0),
        Lot(2, MILK, 1.0, "unit", "fridge", None, None, T0 + timedelta(minutes=1), None, 0.0),
    ]
    assert recorder.inventory.snapshot() == {MILK: 2.0}
    assert recorder.inventory.quantity(MILK) == 2.0
    # A code the catalog has not described yet is remembered as unknown.
    assert recorder.inventory.unknown_codes() == [MILK]
    assert recorder.inventory.product(MILK).label == f"unknown product {MILK}"


def test_a_g_or_ml_pack_is_its_net_pack_size_and_its_gross_weight_only_without_one(
    recorder: Recorder, conn: sqlite3.Connection
) -> None:
    learn(
        conn,
        ProductInfo(code=MILK, name="Milk 1 l", unit="ml", unit_grams=1040, pack_size=1000),
        ProductInfo(code=BUTTER, name="Butter 250 g", unit="g", unit_grams=260),
        ProductInfo(code=EGGS, name="Eggs, 10", unit="unit", unit_grams=620, pack_size=10),
    )
    (milk,) = recorder.add(MILK)
    (butter,) = recorder.add(BUTTER)
    (eggs,) = recorder.add(EGGS)

    assert isinstance(milk, ItemAdded)
    assert isinstance(butter, ItemAdded)
    assert isinstance(eggs, ItemAdded)
    assert (milk.quantity, butter.quantity, eggs.quantity) == (1000, 260, 1)
    recorder.consume(MILK)  # one pack's scan takes the whole pack
    assert recorder.inventory.quantity(MILK) == 0


def test_a_version_3_database_gains_the_pack_size_and_keeps_its_products(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.executescript(
        """
        CREATE TABLE products (
            code TEXT PRIMARY KEY, name TEXT, unit TEXT NOT NULL DEFAULT 'unit', unit_grams REAL,
            shelf_life_days INTEGER, opened_shelf_life_days INTEGER,
            perishable INTEGER NOT NULL DEFAULT 1, location TEXT NOT NULL DEFAULT 'fridge',
            known INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO products (code, name, unit, unit_grams, known)
        VALUES ('4006381333931', 'Milk', 'ml', 1030, 1);
        PRAGMA user_version = 3;
        """
    )
    old.close()

    conn = open_database(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        product = Inventory(conn).product("4006381333931")
        assert (product.name, product.unit_grams, product.pack_size) == ("Milk", 1030, None)
    finally:
        conn.close()


def test_best_before_unit_and_place_come_from_the_catalog(
    recorder: Recorder, conn: sqlite3.Connection
) -> None:
    recorder.add(MILK)  # before the catalog knows it: no date
    learn(
        conn,
        ProductInfo(code=MILK, name="Milk 1 l", unit="ml", shelf_life_days=7),
        ProductInfo(code=BUTTER, name="Butter", shelf_life_days=0, location="door"),
        ProductInfo(code=CHEESE, name="Frozen peas", location="freezer"),
    )
    assert recorder.inventory.unknown_codes() == []
    assert recorder.inventory.product(MILK).label == "Milk 1 l"

    (milk,) = recorder.add(MILK)
    (butter,) = recorder.add(BUTTER)
    (peas,) = recorder.add(CHEESE)
    assert isinstance(milk, ItemAdded)
    assert isinstance(butter, ItemAdded)
    assert isinstance(peas, ItemAdded)
    assert (milk.lot_id, milk.unit, milk.location, milk.best_before) == (2, "ml", "fridge", date(2024, 5, 8))
    assert (butter.location, butter.best_before) == ("door", date(2024, 5, 1))
    assert (peas.location, peas.best_before) == ("freezer", None)
    assert recorder.inventory.lot(1) == Lot(1, MILK, 1.0, "unit", "fridge", None, None, T0, None, 0.0)
    assert recorder.inventory.lot(2) == Lot(
        2, MILK, 1.0, "ml", "fridge", date(2024, 5, 8), None, T0, None, 0.0
    )
    assert recorder.inventory.lot(99) is None


def test_best_before_counts_days_from_the_utc_date(conn: sqlite3.Connection) -> None:
    late = ManualClock(datetime(2024, 5, 1, 23, 59, tzinfo=UTC))
    recorder = Recorder(conn, DEVICE, late)
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=3))
    (event,) = recorder.add(MILK)
    late.advance(timedelta(minutes=2))
    (next_day,) = recorder.add(MILK)
    assert isinstance(event, ItemAdded)
    assert isinstance(next_day, ItemAdded)
    assert (event.best_before, next_day.best_before) == (date(2024, 5, 4), date(2024, 5, 5))


# consumption order -----------------------------------------------------------------------------


def consumed_lot(recorder: Recorder, code: str) -> int:
    (event,) = recorder.consume(code)
    assert isinstance(event, ItemConsumed)
    return event.lot_id


def test_opened_lots_are_used_first_even_if_due_later(recorder: Recorder, conn: sqlite3.Connection) -> None:
    soon = make_lot(conn, MILK, best_before=date(2024, 5, 3))
    opened_later = make_lot(conn, MILK, best_before=date(2024, 5, 20), opened=True)
    undated_opened = make_lot(conn, MILK, opened=True)
    assert [lot.id for lot in recorder.inventory.lots_of(MILK)] == [opened_later, undated_opened, soon]
    assert consumed_lot(recorder, MILK) == opened_later
    assert consumed_lot(recorder, MILK) == undated_opened
    assert consumed_lot(recorder, MILK) == soon


def test_then_the_earliest_due(recorder: Recorder, conn: sqlite3.Connection) -> None:
    late = make_lot(conn, MILK, best_before=date(2024, 5, 9))
    undated = make_lot(conn, MILK)
    early = make_lot(conn, MILK, best_before=date(2024, 5, 4))
    middle = make_lot(conn, MILK, best_before=date(2024, 5, 6))
    # Undated lots come last: nothing says they are urgent.
    assert [consumed_lot(recorder, MILK) for _ in range(4)] == [early, middle, late, undated]


def test_then_the_first_in(recorder: Recorder, conn: sqlite3.Connection) -> None:
    first = make_lot(conn, MILK, best_before=date(2024, 5, 6))
    second = make_lot(conn, MILK, best_before=date(2024, 5, 6))
    third = make_lot(conn, MILK, best_before=date(2024, 5, 6))
    opened_a = make_lot(conn, EGGS, opened=True)
    opened_b = make_lot(conn, EGGS, opened=True)
    assert [consumed_lot(recorder, MILK) for _ in range(3)] == [first, second, third]
    assert [consumed_lot(recorder, EGGS) for _ in range(2)] == [opened_a, opened_b]


def test_a_scan_out_finishes_a_lot_with_a_fraction_left_and_leaves_the_next_whole(
    detailed: Recorder, clock: ManualClock
) -> None:
    detailed.add(MILK)
    detailed.add(MILK)
    detailed.open(MILK)
    (poured,) = detailed.consume_lot(1, 0.75)  # the shelf saw three quarters go
    assert isinstance(poured, ItemConsumed)
    assert (poured.lot_id, poured.quantity, poured.source) == (1, 0.75, "weight")

    # One unit scanned out of what the shelves saw partly used takes what is left of that lot only.
    (rest,) = detailed.consume(MILK)
    assert isinstance(rest, ItemConsumed)
    assert (rest.seq, rest.lot_id, rest.quantity, rest.source) == (5, 1, 0.25, "scan")
    emptied = detailed.inventory.lot(1)
    assert emptied is not None
    assert (emptied.quantity, emptied.withheld) == (0.0, 0.0)
    assert [(lot.id, lot.quantity) for lot in detailed.inventory.lots_of(MILK)] == [(2, 1.0)]

    (whole,) = detailed.consume(MILK)
    assert isinstance(whole, ItemConsumed)
    assert (whole.seq, whole.lot_id, whole.quantity, whole.source) == (6, 2, 1.0, "scan")
    assert detailed.inventory.snapshot() == {}


def test_each_unit_of_a_multi_unit_scan_out_takes_from_the_first_lot(detailed: Recorder) -> None:
    for _ in range(3):
        detailed.add(MILK)
    detailed.consume_lot(1, 0.5)
    events = detailed.consume(MILK, 2)
    # The first unit finishes the half-used lot; the second takes a whole pack from the next.
    assert [(e.seq, e.lot_id, e.quantity, e.source) for e in events if isinstance(e, ItemConsumed)] == [
        (5, 1, 0.5, "scan"),
        (6, 2, 1.0, "scan"),
    ]
    assert len(events) == 2
    assert [(lot.id, lot.quantity) for lot in detailed.inventory.lots_of(MILK)] == [(3, 1.0)]
    # More units than the fridge holds: what there is, and no error for the rest.
    (last,) = detailed.consume(MILK, 5)
    assert isinstance(last, ItemConsumed)
    assert (last.seq, last.lot_id, last.quantity) == (7, 3, 1.0)
    assert detailed.inventory.snapshot() == {}


def test_consuming_several_units_at_once(detailed: Recorder) -> None:
    for _ in range(3):
        detailed.add(EGGS)
    events = detailed.consume(EGGS, 2)
    assert [(e.lot_id, e.quantity) for e in events if isinstance(e, ItemConsumed)] == [(1, 1.0), (2, 1.0)]
    assert len(events) == 2
    assert detailed.inventory.quantity(EGGS) == 1.0


@pytest.mark.parametrize(
    "act",
    [
        lambda r: r.consume(MILK),
        lambda r: r.apply(Scan(code=MILK, delta=-1)),
        lambda r: r.open(MILK),
        lambda r: r.move(MILK, "freezer"),
        lambda r: r.discard(MILK, "expired"),
    ],
    ids=["consume", "scan-out", "open", "move", "discard"],
)
def test_not_in_fridge_leaves_outbox_and_seq_untouched(
    recorder: Recorder, act: Callable[[Recorder], list[Event]]
) -> None:
    recorder.add(EGGS)
    recorder.add(MILK)
    recorder.consume(MILK)  # the lot is still there, but empty
    before = recorder.outbox.pending(after=0, limit=100)
    with pytest.raises(
        NotInFridge, match=f"{MILK} is not in the fridge: scan it in with \\+{MILK} first"
    ) as info:
        act(recorder)
    assert info.value.code == MILK
    assert isinstance(info.value, LookupError)
    assert recorder.outbox.pending(after=0, limit=100) == before
    assert recorder.outbox.last_seq() == 3
    assert recorder.inventory.snapshot() == {EGGS: 1.0}
    # The next event takes the next number: no gap for the refused action.
    assert recorder.add(MILK)[0].seq == 4


# open, move, discard -----------------------------------------------------------------------------


def test_open_shortens_best_before(detailed: Recorder, conn: sqlite3.Connection, clock: ManualClock) -> None:
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=7, opened_shelf_life_days=3))
    detailed.add(MILK)  # due 2024-05-08
    detailed.add(MILK)
    clock.advance(timedelta(days=1))
    (opened,) = detailed.apply(Open(code=MILK))
    assert isinstance(opened, ItemOpened)
    # Opened on 2024-05-02: three days from then is earlier than the printed date.
    assert (opened.seq, opened.lot_id, opened.best_before, opened.occurred_at) == (
        3,
        1,
        date(2024, 5, 5),
        T0 + timedelta(days=1),
    )
    lot = detailed.inventory.lot(1)
    assert lot is not None
    assert (lot.opened_at, lot.best_before) == (T0 + timedelta(days=1), date(2024, 5, 5))
    # The next open takes the next unopened lot; then there is none left to open.
    (again,) = detailed.open(MILK)
    assert isinstance(again, ItemOpened)
    assert again.lot_id == 2
    with pytest.raises(NothingToDo, match=f"^every lot of {MILK} is open already$"):
        detailed.open(MILK)
    assert detailed.outbox.last_seq() == 4


@pytest.mark.parametrize(
    ("shelf_life", "opened_shelf_life", "expected"),
    [
        (2, 5, date(2024, 5, 3)),  # the printed date comes first: it stays
        (7, 3, date(2024, 5, 4)),
        (None, 3, date(2024, 5, 4)),  # no date yet: opening gives one
        (7, None, date(2024, 5, 8)),  # no opened shelf life: unchanged
        (None, None, None),
        (7, 0, date(2024, 5, 1)),
    ],
)
def test_open_takes_the_earlier_date(
    detailed: Recorder,
    conn: sqlite3.Connection,
    shelf_life: int | None,
    opened_shelf_life: int | None,
    expected: date | None,
) -> None:
    learn(
        conn,
        ProductInfo(
            code=MILK, name="Milk", shelf_life_days=shelf_life, opened_shelf_life_days=opened_shelf_life
        ),
    )
    detailed.add(MILK)
    (opened,) = detailed.open(MILK)
    assert isinstance(opened, ItemOpened)
    assert opened.best_before == expected
    lot = detailed.inventory.lot(1)
    assert lot is not None
    assert lot.best_before == expected


def test_move(recorder: Recorder, clock: ManualClock) -> None:
    recorder.add(MILK)
    recorder.add(MILK)
    clock.advance(timedelta(minutes=3))
    (moved,) = recorder.apply(Move(code=MILK, location="freezer"))
    assert isinstance(moved, ItemMoved)
    assert (moved.seq, moved.lot_id, moved.from_location, moved.to_location, moved.occurred_at) == (
        3,
        1,
        "fridge",
        "freezer",
        T0 + timedelta(minutes=3),
    )
    # The next move to the freezer takes the lot still elsewhere.
    (second,) = recorder.move(MILK, "freezer")
    assert isinstance(second, ItemMoved)
    assert second.lot_id == 2
    with pytest.raises(NothingToDo, match=f"^every lot of {MILK} is in the freezer$"):
        recorder.move(MILK, "freezer")
    (back,) = recorder.move(MILK, "door")
    assert isinstance(back, ItemMoved)
    assert (back.lot_id, back.from_location, back.to_location) == (1, "freezer", "door")
    assert [(lot.id, lot.location) for lot in recorder.inventory.lots_of(MILK)] == [
        (1, "door"),
        (2, "freezer"),
    ]
    assert recorder.inventory.quantity(MILK) == 2.0


def test_discard_throws_away_what_is_left_of_a_whole_lot(detailed: Recorder) -> None:
    detailed.add(MILK)
    detailed.add(MILK)
    detailed.consume_lot(1, 0.5)
    (thrown,) = detailed.apply(Discard(code=MILK, reason="spoiled"))
    assert isinstance(thrown, ItemDiscarded)
    assert (thrown.seq, thrown.lot_id, thrown.quantity, thrown.unit, thrown.reason) == (
        4,
        1,
        0.5,
        "unit",
        "spoiled",
    )
    assert detailed.inventory.lots_of(MILK) == [
        Lot(2, MILK, 1.0, "unit", "fridge", None, None, T0, None, 0.0)
    ]
    (expired,) = detailed.discard(MILK, "expired")
    assert isinstance(expired, ItemDiscarded)
    assert (expired.lot_id, expired.quantity, expired.reason) == (2, 1.0, "expired")
    assert detailed.inventory.snapshot() == {}


def test_discard_a_named_lot(recorder: Recorder) -> None:
    for _ in range(3):
        recorder.add(MILK)
    (thrown,) = recorder.discard(MILK, "other", lot_id=2)
    assert isinstance(thrown, ItemDiscarded)
    assert (thrown.lot_id, thrown.quantity, thrown.reason) == (2, 1.0, "other")
    assert [lot.id for lot in recorder.inventory.lots_of(MILK)] == [1, 3]
    with pytest.raises(NotInFridge):
        recorder.discard(MILK, "other", lot_id=2)  # already gone
    with pytest.raises(NotInFridge):
        recorder.discard(EGGS, "other", lot_id=1)  # a lot of another product
    assert recorder.outbox.last_seq() == 4


def test_a_bad_discard_reason_records_nothing(recorder: Recorder) -> None:
    recorder.add(MILK)
    with pytest.raises(ValidationError, match="reason"):
        recorder.discard(MILK, "eaten")
    assert recorder.inventory.quantity(MILK) == 1.0
    assert recorder.outbox.last_seq() == 1


@pytest.mark.parametrize(
    ("act", "message"),
    [
        (lambda r: r.open(MILK), f"every lot of {MILK} is open already"),
        (lambda r: r.apply(Open(code=MILK)), f"every lot of {MILK} is open already"),
        (lambda r: r.move(MILK, "door"), f"every lot of {MILK} is in the door"),
        (lambda r: r.apply(Move(code=MILK, location="door")), f"every lot of {MILK} is in the door"),
    ],
    ids=["open", "scan-open", "move", "scan-move"],
)
def test_nothing_to_do_says_why_and_leaves_outbox_and_seq_untouched(
    recorder: Recorder, act: Callable[[Recorder], list[Event]], message: str
) -> None:
    recorder.add(MILK)  # 1
    recorder.add(MILK)  # 2
    recorder.open(MILK)  # openings stay home by default: no seq
    recorder.open(MILK)
    recorder.move(MILK, "door")  # 3
    recorder.move(MILK, "door")  # 4
    lots = recorder.inventory.lots_of(MILK)
    before = recorder.outbox.pending(after=0, limit=100)
    with pytest.raises(NothingToDo) as info:
        act(recorder)
    # Not NotInFridge: the fridge holds the product, there is just nothing left to do to it.
    assert str(info.value) == message
    assert not isinstance(info.value, NotInFridge)
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, EdgeError)
    assert recorder.outbox.pending(after=0, limit=100) == before
    assert recorder.outbox.last_seq() == 4
    assert recorder.inventory.lots_of(MILK) == lots
    assert recorder.add(MILK)[0].seq == 5


def test_a_scan_moves_one_pack_of_a_product_kept_in_grams_or_millilitres(
    detailed: Recorder, conn: sqlite3.Connection
) -> None:
    learn(
        conn,
        ProductInfo(code=MILK, name="Milk 1 l", unit="ml", unit_grams=1000),
        ProductInfo(code=CHEESE, name="Cheese 200 g", unit="g", unit_grams=200),
        ProductInfo(code=BUTTER, name="Butter", unit="g"),  # no pack weight known: 1 g
        ProductInfo(code=EGGS, name="Egg", unit_grams=60),  # counted in units: the weight is for shelves
    )
    (milk,) = detailed.apply(Scan(code=MILK, delta=1))
    (cheese,) = detailed.add(CHEESE)
    (butter,) = detailed.add(BUTTER)
    (egg,) = detailed.add(EGGS)
    assert [
        (e.lot_id, e.quantity, e.unit) for e in (milk, cheese, butter, egg) if isinstance(e, ItemAdded)
    ] == [
        (1, 1000.0, "ml"),
        (2, 200.0, "g"),
        (3, 1.0, "g"),
        (4, 1.0, "unit"),
    ]
    assert detailed.inventory.snapshot() == {BUTTER: 1.0, CHEESE: 200.0, EGGS: 1.0, MILK: 1000.0}

    # A scan-out takes one pack.
    (used,) = detailed.apply(Scan(code=MILK, delta=-1))
    assert isinstance(used, ItemConsumed)
    assert (used.lot_id, used.quantity, used.unit, used.source) == (1, 1000.0, "ml", "scan")
    assert detailed.inventory.quantity(MILK) == 0.0
    for code, quantity in ((CHEESE, 200.0), (BUTTER, 1.0), (EGGS, 1.0)):
        (event,) = detailed.consume(code)
        assert isinstance(event, ItemConsumed)
        assert (event.code, event.quantity) == (code, quantity)
    assert detailed.inventory.snapshot() == {}

    # A lot the shelves saw partly used is finished by one scan; the next pack stays whole.
    detailed.add(MILK)  # lot 5
    detailed.add(MILK)  # lot 6
    detailed.consume_lot(5, 250)
    (rest,) = detailed.consume(MILK)
    assert isinstance(rest, ItemConsumed)
    assert (rest.lot_id, rest.quantity) == (5, 750.0)
    assert [(lot.id, lot.quantity) for lot in detailed.inventory.lots_of(MILK)] == [(6, 1000.0)]

    # A lot put in with another quantity goes out a pack at a time.
    (big,) = detailed.add(CHEESE, 500)
    assert isinstance(big, ItemAdded)
    assert (big.lot_id, big.quantity) == (7, 500.0)
    taken = [e.quantity for e in detailed.consume(CHEESE, 3) if isinstance(e, ItemConsumed)]
    assert taken == [200.0, 200.0, 100.0]
    assert detailed.inventory.quantity(CHEESE) == 0.0


# sequence numbers and payloads -------------------------------------------------------------------


def test_seq_increases_without_gaps_and_survives_reopening(db_path: Path, clock: ManualClock) -> None:
    first = open_database(db_path)
    try:
        recorder = Recorder(first, DEVICE, clock)
        assert [recorder.add(MILK)[0].seq for _ in range(3)] == [1, 2, 3]
        assert [seq for seq, _ in recorder.outbox.pending(after=0, limit=10)] == [1, 2, 3]
        recorder.outbox.acknowledge([(1, 3)])
        assert recorder.outbox.depth() == 0
    finally:
        first.close()
    second = open_database(db_path)
    try:
        recorder = Recorder(second, DEVICE, clock)
        assert recorder.outbox.last_seq() == 3
        assert recorder.inventory.quantity(MILK) == 3.0
        # Acknowledged events are gone, but their numbers are never reused.
        assert recorder.consume(MILK)[0].seq == 4
        assert recorder.add(EGGS)[0].seq == 5
        assert [seq for seq, _ in recorder.outbox.pending(after=0, limit=10)] == [4, 5]
    finally:
        second.close()


def test_two_recorders_on_one_file_share_the_sequence(db_path: Path, clock: ManualClock) -> None:
    a, b = open_database(db_path), open_database(db_path)
    try:
        assert Recorder(a, DEVICE, clock).add(MILK)[0].seq == 1
        assert Recorder(b, DEVICE, clock).add(MILK)[0].seq == 2
        assert Recorder(a, DEVICE, clock).inventory.quantity(MILK) == 2.0
    finally:
        a.close()
        b.close()


def test_failed_append_rolls_back_lot_product_and_seq(recorder: Recorder, conn: sqlite3.Connection) -> None:
    # A stray row under the next seq makes the outbox insert fail after the lot was created.
    conn.execute("INSERT INTO outbox (seq, payload, created_at) VALUES (1, x'00', 'x')")
    with pytest.raises(sqlite3.IntegrityError):
        recorder.add(MILK)
    assert count(conn, "lots") == 0
    assert count(conn, "products") == 0
    assert recorder.outbox.last_seq() == 0
    assert not conn.in_transaction


def test_every_payload_decodes_to_the_returned_event(
    detailed: Recorder, conn: sqlite3.Connection, clock: ManualClock
) -> None:
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=7, opened_shelf_life_days=3))
    with transaction(conn):
        detailed.offers.store(offer(OFFER, T0 + timedelta(days=1)), T0)
    returned: list[Event] = []

    def step(events: list[Event] | Event | None) -> None:
        clock.advance(timedelta(seconds=17))
        if isinstance(events, list):
            returned.extend(events)
        elif events is not None:
            returned.append(events)

    step(detailed.add(MILK))
    step(detailed.add(MILK))
    step(detailed.add(EGGS))
    step(detailed.open(MILK))
    step(detailed.consume_lot(1, 0.5))
    step(detailed.consume(MILK))  # finishes lot 1: the half the shelf left
    step(detailed.move(EGGS, "door"))
    step(detailed.discard(MILK, "expired"))
    step(detailed.alert_raised("expiring", "lot:3", "Eggs are due", MIDNIGHT, (EGGS,)))
    step(detailed.alert_cleared("expiring", "lot:3"))
    step(detailed.answer_offer(OFFER, "dismissed"))
    step(detailed.config_applied(2, None))
    assert outbox(detailed) == returned
    step(detailed.wipe(WIPE))

    assert [type(e) for e in returned] == [
        ItemAdded,
        ItemAdded,
        ItemAdded,
        ItemOpened,
        ItemConsumed,
        ItemConsumed,
        ItemMoved,
        ItemDiscarded,
        AlertRaised,
        AlertCleared,
        OfferAnswered,
        ConfigApplied,
        DataWiped,
    ]
    assert [e.seq for e in returned] == list(range(1, 14))
    assert len({e.event_id for e in returned}) == 13
    assert all(e.device_id == DEVICE for e in returned)
    # The wipe discarded every unsent event: only its own report is left.
    assert outbox(detailed) == returned[-1:]
    wiped = returned[-1]
    assert isinstance(wiped, DataWiped)
    assert wiped.discarded == ((1, 12),)


def test_payloads_decode_to_the_returned_events_and_keep_created_at(
    detailed: Recorder, conn: sqlite3.Connection, clock: ManualClock
) -> None:
    returned: list[Event] = []
    returned += detailed.add(MILK)
    clock.advance(timedelta(seconds=90))
    returned += detailed.add(MILK)
    returned += detailed.add(MILK)
    returned += detailed.open(MILK)
    returned += detailed.consume_lot(1, 0.25)
    returned += detailed.consume(MILK, 2)  # the 0.75 left of lot 1, then all of lot 2
    returned += detailed.move(MILK, "freezer")
    returned += detailed.discard(MILK, "spoiled")
    assert [type(e) for e in returned] == [
        ItemAdded, ItemAdded, ItemAdded, ItemOpened, ItemConsumed, ItemConsumed, ItemConsumed, ItemMoved,
        ItemDiscarded,
    ]  # fmt: skip
    assert [(e.lot_id, e.quantity) for e in returned if isinstance(e, ItemConsumed)] == [
        (1, 0.25),
        (1, 0.75),
        (2, 1.0),
    ]
    assert outbox(detailed) == returned
    assert [e.seq for e in returned] == list(range(1, len(returned) + 1))
    created = [row[0] for row in conn.execute("SELECT created_at FROM outbox ORDER BY seq")]
    assert created == [T0.isoformat()] + [(T0 + timedelta(seconds=90)).isoformat()] * (len(returned) - 1)


# consent ----------------------------------------------------------------------------------------


def test_default_consent_shares_inventory_and_telemetry_only() -> None:
    assert ConsentSettings().share == frozenset({"inventory", "telemetry"})


def test_openings_stay_home_by_default(recorder: Recorder, conn: sqlite3.Connection) -> None:
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=7, opened_shelf_life_days=2))
    recorder.add(MILK)
    assert recorder.open(MILK) == []
    assert [e.type for e in outbox(recorder)] == ["item_added"]
    assert recorder.outbox.last_seq() == 1  # no seq spent on the withheld event
    lot = recorder.inventory.lot(1)
    assert lot is not None
    # The fridge still knows the lot is open and due sooner.
    assert (lot.opened_at, lot.best_before) == (T0, date(2024, 5, 3))


def test_scan_consumption_is_reported_by_the_day(
    recorder: Recorder, conn: sqlite3.Connection, clock: ManualClock
) -> None:
    recorder.add(MILK)
    clock.advance(timedelta(hours=9, minutes=41, seconds=7))  # 21:41:07 UTC
    (used,) = recorder.consume(MILK)
    assert isinstance(used, ItemConsumed)
    assert (used.seq, used.lot_id, used.quantity, used.source) == (2, 1, 1.0, "scan")
    assert used.occurred_at == MIDNIGHT
    assert outbox(recorder)[-1] == used
    # Only what is published is coarse: the outbox row keeps the real time.
    created = conn.execute("SELECT created_at FROM outbox WHERE seq = 2").fetchone()[0]
    assert created == (T0 + timedelta(hours=9, minutes=41, seconds=7)).isoformat()


def test_weight_consumption_is_withheld_until_the_lot_is_finished(
    recorder: Recorder, clock: ManualClock
) -> None:
    recorder.add(MILK)
    clock.advance(timedelta(hours=2))
    assert recorder.consume_lot(1, 0.25) == []
    clock.advance(timedelta(hours=2))
    assert recorder.consume_lot(1, 0.5) == []
    assert recorder.outbox.last_seq() == 1
    lot = recorder.inventory.lot(1)
    assert lot is not None
    assert (lot.quantity, lot.withheld) == (0.25, 0.75)

    clock.advance(timedelta(hours=13))  # 2024-05-02 05:00
    (finished,) = recorder.consume_lot(1, 0.5)  # more than is left: what is left
    assert isinstance(finished, ItemConsumed)
    assert (finished.seq, finished.lot_id, finished.quantity, finished.source) == (2, 1, 1.0, "weight")
    assert finished.occurred_at == datetime(2024, 5, 2, tzinfo=UTC)
    assert outbox(recorder)[-1] == finished
    lot = recorder.inventory.lot(1)
    assert lot is not None
    assert (lot.quantity, lot.withheld) == (0.0, 0.0)
    # An empty lot has nothing more to give.
    assert recorder.consume_lot(1, 0.5) == []
    assert recorder.consume_lot(999, 0.5) == []
    assert recorder.outbox.last_seq() == 2


def test_withheld_weight_use_is_added_to_the_scan_that_finishes_the_lot(recorder: Recorder) -> None:
    recorder.add(MILK)
    assert recorder.consume_lot(1, 0.25) == []
    (used,) = recorder.consume(MILK)
    assert isinstance(used, ItemConsumed)
    # One use of the whole lot: the cloud's stock goes back to zero.
    assert (used.lot_id, used.quantity, used.source, used.occurred_at) == (1, 1.0, "scan", MIDNIGHT)


def test_withheld_weight_use_is_not_lost_when_the_rest_is_discarded(
    recorder: Recorder, clock: ManualClock
) -> None:
    recorder.add(MILK)
    assert recorder.consume_lot(1, 0.5) == []
    clock.advance(timedelta(hours=3, minutes=7))
    # The use held back is reported first, by the day, as the shelf measured it; then the discard.
    used, thrown = recorder.discard(MILK, "spoiled")
    assert isinstance(used, ItemConsumed)
    assert (used.seq, used.lot_id, used.quantity, used.unit, used.source, used.occurred_at) == (
        2,
        1,
        0.5,
        "unit",
        "weight",
        MIDNIGHT,
    )
    assert isinstance(thrown, ItemDiscarded)
    assert (thrown.seq, thrown.lot_id, thrown.quantity, thrown.reason, thrown.occurred_at) == (
        3,
        1,
        0.5,
        "spoiled",
        T0 + timedelta(hours=3, minutes=7),
    )
    assert outbox(recorder)[1:] == [used, thrown]
    lot = recorder.inventory.lot(1)
    assert lot is not None
    assert (lot.quantity, lot.withheld) == (0.0, 0.0)
    stock = 0.0
    for event in outbox(recorder):
        if isinstance(event, ItemAdded):
            stock += event.quantity
        elif isinstance(event, ItemConsumed | ItemDiscarded):
            stock -= event.quantity
    assert stock == 0.0


def test_consumption_detail_shares_exact_times_and_partial_amounts(
    detailed: Recorder, clock: ManualClock
) -> None:
    detailed.add(MILK)
    clock.advance(timedelta(hours=3, seconds=5))
    (first,) = detailed.consume_lot(1, 0.25)
    clock.advance(timedelta(minutes=30))
    (second,) = detailed.consume_lot(1, 0.5)
    assert isinstance(first, ItemConsumed)
    assert isinstance(second, ItemConsumed)
    assert (first.seq, first.quantity, first.source, first.occurred_at) == (
        2,
        0.25,
        "weight",
        T0 + timedelta(hours=3, seconds=5),
    )
    assert (second.seq, second.quantity, second.occurred_at) == (
        3,
        0.5,
        T0 + timedelta(hours=3, minutes=30, seconds=5),
    )
    lot = detailed.inventory.lot(1)
    assert lot is not None
    assert (lot.quantity, lot.withheld) == (0.25, 0.0)
    (scan,) = detailed.consume(MILK)
    assert isinstance(scan, ItemConsumed)
    assert (scan.quantity, scan.source, scan.occurred_at) == (
        0.25,
        "scan",
        T0 + timedelta(hours=3, minutes=30, seconds=5),
    )
    assert outbox(detailed)[1:] == [first, second, scan]


def test_without_telemetry_consent_samples_are_refused(conn: sqlite3.Connection, clock: ManualClock) -> None:
    recorder = Recorder(conn, DEVICE, clock, consent=ConsentSettings(share=frozenset({"inventory"})))
    assert recorder.telemetry_sample(sample()) is False
    assert recorder.telemetry.depth() == 0
    assert recorder.depth() == 0
    # Door and temperature alerts are telemetry too; expiry alerts are inventory.
    assert recorder.alert_raised("door_open", "door", "The door is open", T0) is None
    assert recorder.alert_cleared("door_open", "door") is None
    assert isinstance(
        recorder.alert_raised("expired", "lot:1", "Milk is past its date", MIDNIGHT), AlertRaised
    )
    assert [e.type for e in outbox(recorder)] == ["alert_raised"]


def test_telemetry_samples_are_kept_with_consent(recorder: Recorder) -> None:
    assert recorder.telemetry_sample(sample(1.0)) is True
    assert recorder.telemetry_sample(sample(2.0)) is True
    assert recorder.telemetry.depth() == 2
    assert recorder.depth() == 2
    assert [TelemetryReported.model_validate_json(p).uptime_s for _, p in recorder.telemetry.pending(10)] == [
        1.0,
        2.0,
    ]
    assert recorder.outbox.depth() == 0


@pytest.mark.parametrize("share", [frozenset(), frozenset({"telemetry"})])
def test_without_inventory_consent_no_stock_event_leaves(
    conn: sqlite3.Connection, clock: ManualClock, share: frozenset[Category]
) -> None:
    recorder = Recorder(conn, DEVICE, clock, consent=ConsentSettings(share=share))
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=5, opened_shelf_life_days=2))
    assert recorder.add(MILK) == []
    assert recorder.add(MILK) == []
    assert recorder.add(EGGS) == []
    assert recorder.open(MILK) == []
    assert recorder.consume_lot(1, 0.5) == []
    assert recorder.consume(MILK) == []
    assert recorder.move(EGGS, "door") == []
    assert recorder.discard(EGGS, "spoiled") == []
    assert recorder.alert_raised("expiring", "lot:2", "Milk is due soon", MIDNIGHT) is None
    assert recorder.outbox.depth() == 0
    assert recorder.outbox.last_seq() == 0
    # The fridge itself still knows everything.
    assert [
        (lot.id, lot.quantity, lot.location, lot.opened_at is not None) for lot in recorder.inventory.lots()
    ] == [
        (2, 1.0, "fridge", False),  # the scan-out finished lot 1, the half the shelf left
    ]
    assert recorder.active_alerts() == [("expiring", "lot:2", "Milk is due soon", MIDNIGHT.isoformat())]
    # What carries no household data is always sent.
    assert isinstance(recorder.config_applied(1, None), ConfigApplied)
    assert [e.seq for e in outbox(recorder)] == [1]


# the outbox bound -----------------------------------------------------------------------------------


def pressure_events(recorder: Recorder) -> list[OutboxPressure]:
    return [e for e in outbox(recorder) if isinstance(e, OutboxPressure)]


def test_one_warning_at_80_percent(conn: sqlite3.Connection, clock: ManualClock) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for _ in range(80):
        recorder.add(MILK)
    assert recorder.depth() == 80
    assert pressure_events(recorder) == []
    assert recorder.pressure() == ("none", 0, 0)

    (added,) = recorder.add(MILK)
    assert added.seq == 82
    (warning,) = pressure_events(recorder)
    assert warning.seq == 81
    assert (
        warning.level,
        warning.depth,
        warning.capacity,
        warning.dropped_events,
        warning.coalesced_telemetry,
    ) == (
        "warning",
        80,
        100,
        0,
        0,
    )
    assert recorder.pressure() == ("warning", 0, 0)
    for _ in range(10):
        recorder.add(MILK)
    assert len(pressure_events(recorder)) == 1
    assert recorder.outbox.last_seq() == 92


def test_telemetry_counts_toward_the_bound(conn: sqlite3.Connection, clock: ManualClock) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for i in range(79):
        assert recorder.telemetry_sample(sample(i))
    recorder.add(MILK)
    assert recorder.pressure() == ("none", 0, 0)
    assert recorder.telemetry_sample(sample(79))  # at 80: the warning
    (warning,) = pressure_events(recorder)
    assert (warning.seq, warning.level, warning.depth) == (2, "warning", 80)


def test_telemetry_is_thinned_before_an_event_is_dropped(
    conn: sqlite3.Connection, clock: ManualClock
) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for i in range(40):
        assert recorder.telemetry_sample(sample(i))
    # 40 samples + 59 events + the warning = 100 rows: full.
    for _ in range(59):
        assert len(recorder.add(MILK)) == 1
    assert recorder.depth() == 100
    assert recorder.pressure() == ("warning", 0, 0)

    (added,) = recorder.add(MILK)  # room is made by thinning telemetry, not by dropping this
    assert added.seq == 61
    assert recorder.pressure() == ("warning", 0, 10)
    # Every other sample of the older half went: the 1st, 3rd, ... (uptimes 0, 2, ..., 18).
    assert uptimes(recorder) == [float(i) for i in [*range(1, 20, 2), *range(20, 40)]]
    assert recorder.depth() == 91

    # Then more thinning, never a dropped event while samples remain to thin.
    for _ in range(9):
        assert len(recorder.add(MILK)) == 1
    assert (recorder.depth(), recorder.pressure()) == (100, ("warning", 0, 10))
    assert len(recorder.add(MILK)) == 1
    # 30 samples: 8 of the older 15 went, by position, whatever their ids.
    assert recorder.pressure() == ("warning", 0, 18)
    assert uptimes(recorder) == [float(i) for i in [3, 7, 11, 15, 19, 21, 23, 25, *range(26, 40)]]
    assert (recorder.telemetry.depth(), recorder.depth()) == (22, 93)
    assert recorder.inventory.quantity(MILK) == 70.0


def uptimes(recorder: Recorder) -> list[float]:
    return [TelemetryReported.model_validate_json(p).uptime_s for _, p in recorder.telemetry.pending(1000)]


def test_events_are_dropped_only_once_no_telemetry_is_left(
    conn: sqlite3.Connection, clock: ManualClock
) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for i in range(40):
        assert recorder.telemetry_sample(sample(i))
    added = 0
    while recorder.pressure()[1] == 0 and added < 200:
        recorder.add(MILK)
        added += 1
    assert recorder.telemetry.depth() == 0
    assert recorder.pressure() == ("full", 1, 40)


def test_events_are_dropped_counted_and_reported_when_full(
    conn: sqlite3.Connection, clock: ManualClock
) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for _ in range(99):
        assert len(recorder.add(MILK)) == 1
    assert recorder.outbox.depth() == 100  # 99 events and the warning
    assert recorder.outbox.last_seq() == 100

    assert recorder.add(MILK) == []  # dropped
    full = pressure_events(recorder)[-1]
    assert (
        full.seq,
        full.level,
        full.depth,
        full.capacity,
        full.dropped_events,
        full.coalesced_telemetry,
    ) == (
        101,
        "full",
        100,
        100,
        1,
        0,
    )
    # The report itself goes beyond the bound: it is what tells the cloud.
    assert recorder.outbox.depth() == 101
    assert recorder.pressure() == ("full", 1, 0)

    assert recorder.add(EGGS) == []
    assert recorder.consume(MILK) == []
    assert recorder.move(MILK, "door") == []
    assert recorder.outbox.last_seq() == 101
    assert len(pressure_events(recorder)) == 2  # the warning and one "full", however many drops
    assert recorder.pressure() == ("full", 4, 0)
    # The fridge's own inventory reflects what was not reported.
    assert recorder.inventory.snapshot() == {EGGS: 1.0, MILK: 99.0}
    assert [lot.location for lot in recorder.inventory.lots_of(MILK)].count("door") == 1

    # Not recovered while the outbox stays above 70 %.
    recorder.outbox.acknowledge([(1, 30)])
    assert recorder.check_recovered() is None
    recorder.outbox.acknowledge([(31, 95)])
    recovered = recorder.check_recovered()
    assert isinstance(recovered, OutboxPressure)
    assert (recovered.seq, recovered.level, recovered.depth, recovered.dropped_events) == (
        102,
        "recovered",
        6,
        4,
    )
    assert outbox(recorder)[-1] == recovered
    assert recorder.pressure() == ("none", 4, 0)
    assert recorder.check_recovered() is None  # once
    assert recorder.add(MILK)[0].seq == 103


def test_check_recovered_without_pressure_does_nothing(recorder: Recorder) -> None:
    recorder.add(MILK)
    assert recorder.check_recovered() is None
    assert recorder.outbox.last_seq() == 1


def test_a_refused_telemetry_sample_is_coalesced_not_a_dropped_event(
    conn: sqlite3.Connection, clock: ManualClock
) -> None:
    recorder = Recorder(conn, DEVICE, clock, capacity=100)
    for _ in range(99):
        recorder.add(MILK)
    assert recorder.depth() == 100  # 99 events and the warning
    assert recorder.telemetry_sample(sample()) is False
    assert recorder.telemetry_sample(sample(1.0)) is False
    assert recorder.telemetry.depth() == 0
    # Each sample that found no room counts as one more coalesced away; no "full" report either.
    assert recorder.pressure() == ("warning", 0, 2)
    assert [e.level for e in pressure_events(recorder)] == ["warning"]
    assert recorder.outbox.last_seq() == 100


# wipe -------------------------------------------------------------------------------------------------


def test_wipe_erases_the_household_and_keeps_the_sequence(
    recorder: Recorder, conn: sqlite3.Connection, clock: ManualClock
) -> None:
    learn(conn, ProductInfo(code=MILK, name="Milk", shelf_life_days=7))
    with transaction(conn):
        recorder.offers.store(offer(OFFER, T0 + timedelta(days=1)), T0)
        recorder.orders.update(order(ORDER, "dispatched", (BUTTER, 2)), T0)
    recorder.add(MILK)  # 1
    recorder.add(MILK)  # 2
    recorder.add(EGGS)  # 3
    recorder.consume(EGGS)  # 4
    recorder.alert_raised("expiring", "lot:1", "Milk is due", MIDNIGHT)  # 5
    recorder.add(BUTTER)  # 6
    assert recorder.telemetry_sample(sample())
    recorder.outbox.acknowledge([(1, 2), (4, 4)])

    clock.advance(timedelta(hours=1))
    wiped = recorder.wipe(WIPE)
    assert isinstance(wiped, DataWiped)
    assert (wiped.seq, wiped.request_id, wiped.discarded, wiped.occurred_at) == (
        7,
        WIPE,
        ((3, 3), (5, 6)),
        T0 + timedelta(hours=1),
    )
    for table in ("lots", "products", "offers", "orders", "order_lines", "telemetry", "alerts"):
        assert count(conn, table) == 0, table
    assert outbox(recorder) == [wiped]
    assert recorder.active_alerts() == []
    assert recorder.orders.expected() == []

    # Numbers continue: the cloud must never see a seq twice; nor a lot id.
    (after,) = recorder.add(MILK)
    assert isinstance(after, ItemAdded)
    assert (after.seq, after.lot_id, after.best_before) == (8, 5, None)


def test_wipe_is_reported_whatever_the_consent(conn: sqlite3.Connection, clock: ManualClock) -> None:
    recorder = Recorder(conn, DEVICE, clock, consent=ConsentSettings(share=frozenset()))
    recorder.add(MILK)
    wiped = recorder.wipe(WIPE)
    assert isinstance(wiped, DataWiped)
    assert (wiped.seq, wiped.discarded) == (1, ())
    assert recorder.inventory.snapshot() == {}


# offers ---------------------------------------------------------------------------------------------------


def test_offers_are_stored_listed_until_they_expire_and_answered(
    recorder: Recorder, conn: sqlite3.Connection, clock: ManualClock
) -> None:
    lasting, brief = offer(OFFER, T0 + timedelta(days=2)), offer(OTHER_OFFER, T0 + timedelta(hours=1), "Eggs")
    with transaction(conn):
        recorder.offers.store(lasting, T0)
        recorder.offers.store(brief, T0 + timedelta(minutes=1))
        recorder.offers.store(offer(OFFER, T0 + timedelta(days=9), "changed"), T0 + timedelta(minutes=2))
    assert [(o.offer, o.received_at, o.answer) for o in recorder.offers.current(T0)] == [
        (brief, T0 + timedelta(minutes=1), None),
        (lasting, T0, None),  # a repeat of an offer changes nothing
    ]
    assert [o.offer.offer_id for o in recorder.offers.current(T0 + timedelta(hours=1))] == [OFFER]

    clock.advance(timedelta(hours=3))
    answered = recorder.answer_offer(OFFER, "accepted")
    assert isinstance(answered, OfferAnswered)
    assert (answered.seq, answered.offer_id, answered.answer, answered.occurred_at) == (
        1,
        OFFER,
        "accepted",
        T0 + timedelta(hours=3),
    )
    assert outbox(recorder) == [answered]
    stored = recorder.offers.get(OFFER)
    assert stored is not None
    assert stored.answer == "accepted"


def test_answering_an_unknown_offer_raises_lookup_error(recorder: Recorder) -> None:
    with pytest.raises(LookupError, match=f"no offer {OFFER} on this fridge"):
        recorder.answer_offer(OFFER, "accepted")
    assert recorder.outbox.last_seq() == 0


def test_a_bad_answer_records_nothing(recorder: Recorder, conn: sqlite3.Connection) -> None:
    with transaction(conn):
        recorder.offers.store(offer(OFFER, T0 + timedelta(days=1)), T0)
    with pytest.raises(ValidationError, match="answer"):
        recorder.answer_offer(OFFER, "maybe")
    stored = recorder.offers.get(OFFER)
    assert stored is not None
    assert stored.answer is None
    assert recorder.outbox.last_seq() == 0


def test_offer_answers_are_sent_whatever_the_consent(conn: sqlite3.Connection, clock: ManualClock) -> None:
    recorder = Recorder(conn, DEVICE, clock, consent=ConsentSettings(share=frozenset()))
    with transaction(conn):
        recorder.offers.store(offer(OFFER, T0 + timedelta(days=1)), T0)
    answered = recorder.answer_offer(OFFER, "dismissed")
    assert isinstance(answered, OfferAnswered)
    assert outbox(recorder) == [answered]


# orders ---------------------------------------------------------------------------------------------------


def test_a_dispatched_order_is_reconciled_on_scan_in(recorder: Recorder, conn: sqlite3.Connection) -> None:
    with transaction(conn):
        recorder.orders.update(order(ORDER, "dispatched", (MILK, 2), (EGGS, 1)), T0)
    # By order, then code.
    assert recorder.orders.expected() == [(str(ORDER), MILK, 2, 0), (str(ORDER), EGGS, 1, 0)]

    (first,) = recorder.add(MILK)
    assert isinstance(first, ItemAdded)
    assert first.order_id == ORDER
    lot = recorder.inventory.lot(first.lot_id)
    assert lot is not None
    assert lot.order_id == str(ORDER)
    assert recorder.orders.expected() == [(str(ORDER), MILK, 2, 1), (str(ORDER), EGGS, 1, 0)]

    (second,) = recorder.add(MILK)
    assert isinstance(second, ItemAdded)
    assert second.order_id == ORDER
    assert recorder.orders.expected() == [(str(ORDER), EGGS, 1, 0)]
    # A third unit was not ordered.
    (third,) = recorder.add(MILK)
    assert isinstance(third, ItemAdded)
    assert third.order_id is None
    (eggs,) = recorder.add(EGGS)
    assert isinstance(eggs, ItemAdded)
    assert eggs.order_id == ORDER
    assert recorder.orders.expected() == []


@pytest.mark.parametrize("status", ["cancelled", "rejected"])
def test_cancelled_orders_are_not_reconciled_nor_expected(
    recorder: Recorder, conn: sqlite3.Connection, status: str
) -> None:
    with transaction(conn):
        recorder.orders.update(order(ORDER, "dispatched", (MILK, 1)), T0)
        recorder.orders.update(order(ORDER, status), T0 + timedelta(minutes=5))
    assert recorder.orders.expected() == []
    (added,) = recorder.add(MILK)
    assert isinstance(added, ItemAdded)
    assert added.order_id is None


def test_orders_not_yet_dispatched_are_expected_but_not_reconciled(
    recorder: Recorder, conn: sqlite3.Connection
) -> None:
    with transaction(conn):
        recorder.orders.update(order(ORDER, "accepted", (MILK, 1)), T0)
    (early,) = recorder.add(MILK)
    assert isinstance(early, ItemAdded)
    assert early.order_id is None
    assert recorder.orders.expected() == [(str(ORDER), MILK, 1, 0)]
    with transaction(conn):
        recorder.orders.update(order(ORDER, "delivered"), T0 + timedelta(hours=1))  # no lines: kept
    (delivered,) = recorder.add(MILK)
    assert isinstance(delivered, ItemAdded)
    assert delivered.order_id == ORDER
    assert recorder.orders.expected() == []


def test_the_order_expected_first_is_reconciled_first(recorder: Recorder, conn: sqlite3.Connection) -> None:
    with transaction(conn):
        recorder.orders.update(
            order(ORDER, "dispatched", (MILK, 1), expected_delivery=T0 + timedelta(days=2)), T0
        )
        recorder.orders.update(
            order(OTHER_ORDER, "dispatched", (MILK, 1), expected_delivery=T0 + timedelta(days=1)), T0
        )
    ids = [e.order_id for e in recorder.add(MILK) + recorder.add(MILK) if isinstance(e, ItemAdded)]
    assert ids == [OTHER_ORDER, ORDER]


def test_new_lines_replace_the_expected_ones(recorder: Recorder, conn: sqlite3.Connection) -> None:
    with transaction(conn):
        recorder.orders.update(order(ORDER, "picking", (MILK, 2), (EGGS, 1)), T0)
        recorder.orders.update(order(ORDER, "dispatched", (MILK, 3)), T0 + timedelta(hours=1))
    assert recorder.orders.expected() == [(str(ORDER), MILK, 3, 0)]
    (eggs,) = recorder.add(EGGS)  # no longer ordered
    assert isinstance(eggs, ItemAdded)
    assert eggs.order_id is None
    recorder.add(MILK)
    # A line given again keeps what was received of it.
    with transaction(conn):
        recorder.orders.update(order(ORDER, "dispatched", (MILK, 2), (BUTTER, 1)), T0 + timedelta(hours=2))
    assert recorder.orders.expected() == [(str(ORDER), BUTTER, 1, 0), (str(ORDER), MILK, 2, 1)]


def test_baskets_are_listed_but_not_expected(recorder: Recorder, conn: sqlite3.Connection) -> None:
    basket, other = UUID(int=71), UUID(int=72)
    with transaction(conn):
        recorder.orders.update(order(basket, "proposed", (MILK, 2)), T0)
        recorder.orders.update(order(other, "approved", (EGGS, 1)), T0 + timedelta(minutes=1))
        recorder.orders.update(order(ORDER, "created", (BUTTER, 1)), T0 + timedelta(minutes=2))
    assert recorder.orders.expected() == [(str(ORDER), BUTTER, 1, 0)]
    assert recorder.orders.listed() == [
        (str(ORDER), "created", f"{BUTTER}×1"),
        (str(other), "approved", f"{EGGS}×1"),
        (str(basket), "proposed", f"{MILK}×2"),
    ]
    assert recorder.orders.status(basket) == "proposed"
    assert recorder.orders.status(UUID(int=99)) is None


def test_order_answers_are_sent_for_known_orders_only(conn: sqlite3.Connection, clock: ManualClock) -> None:
    # Sent whatever the consent: the household's own answer carries nothing else.
    recorder = Recorder(conn, DEVICE, clock, consent=ConsentSettings(share=frozenset()))
    with pytest.raises(LookupError, match=f"no order {ORDER} on this fridge"):
        recorder.answer_order(ORDER, "approve")
    with transaction(conn):
        recorder.orders.update(order(ORDER, "proposed", (MILK, 2)), T0)
    with pytest.raises(ValidationError, match="answer"):
        recorder.answer_order(ORDER, "maybe")
    answered = recorder.answer_order(ORDER, "skip")
    assert isinstance(answered, OrderAnswered)
    assert (answered.seq, answered.order_id, answered.answer) == (1, ORDER, "skip")
    assert outbox(recorder) == [answered]


# alerts and configuration -----------------------------------------------------------------------


def test_alerts_are_kept_locally_until_cleared(recorder: Recorder, clock: ManualClock) -> None:
    raised = recorder.alert_raised("temperature_high", "probe:fridge", "Fridge at 9.5 °C", T0, (EGGS, MILK))
    assert isinstance(raised, AlertRaised)
    assert (raised.kind, raised.subject, raised.detail, raised.since, raised.perishable_codes) == (
        "temperature_high",
        "probe:fridge",
        "Fridge at 9.5 °C",
        T0,
        (EGGS, MILK),
    )
    clock.advance(timedelta(minutes=1))
    recorder.alert_raised("door_open", "door", "The door is open", T0 + timedelta(minutes=1))
    assert recorder.active_alerts() == [
        ("temperature_high", "probe:fridge", "Fridge at 9.5 °C", T0.isoformat()),
        ("door_open", "door", "The door is open", (T0 + timedelta(minutes=1)).isoformat()),
    ]
    cleared = recorder.alert_cleared("temperature_high", "probe:fridge")
    assert isinstance(cleared, AlertCleared)
    assert (cleared.seq, cleared.kind, cleared.subject) == (3, "temperature_high", "probe:fridge")
    assert [a[1] for a in recorder.active_alerts()] == ["door"]


def test_config_applied_reports_and_remembers_the_version(recorder: Recorder) -> None:
    assert recorder.applied_config_version() == 0
    applied = recorder.config_applied(3, None)
    assert isinstance(applied, ConfigApplied)
    assert (applied.version, applied.status, applied.error) == (3, "applied", None)
    rejected = recorder.config_applied(4, "settings not configurable remotely: color")
    assert isinstance(rejected, ConfigApplied)
    assert (rejected.version, rejected.status, rejected.error) == (
        4,
        "rejected",
        "settings not configurable remotely: color",
    )
    assert recorder.applied_config_version() == 4
    assert outbox(recorder) == [applied, rejected]


# the outbox -----------------------------------------------------------------------------------------------


def _fill(recorder: Recorder, count: int) -> None:
    for _ in range(count):
        recorder.add(MILK)


def test_pending_order_after_and_limit(recorder: Recorder) -> None:
    _fill(recorder, 6)
    box = recorder.outbox
    assert [seq for seq, _ in box.pending(after=0, limit=100)] == [1, 2, 3, 4, 5, 6]
    assert [seq for seq, _ in box.pending(after=0, limit=2)] == [1, 2]
    assert [seq for seq, _ in box.pending(after=2, limit=3)] == [3, 4, 5]
    assert [seq for seq, _ in box.pending(after=5, limit=3)] == [6]
    assert box.pending(after=6, limit=3) == []
    assert box.pending(after=0, limit=0) == []
    assert all(isinstance(payload, bytes) for _, payload in box.pending(after=0, limit=100))


def test_pending_skips_acknowledged_gaps(recorder: Recorder) -> None:
    _fill(recorder, 6)
    recorder.outbox.acknowledge([(2, 3)])
    assert [seq for seq, _ in recorder.outbox.pending(after=1, limit=2)] == [4, 5]
    # The span is an upper bound of the depth: newest minus oldest, plus one.
    assert (recorder.outbox.depth(), recorder.outbox.span()) == (4, 6)


def test_acknowledge_removes_exactly_the_ranges(recorder: Recorder) -> None:
    _fill(recorder, 10)
    box = recorder.outbox
    assert box.acknowledge([(2, 4), (7, 7), (9, 12)]) == 6
    assert [seq for seq, _ in box.pending(after=0, limit=100)] == [1, 5, 6, 8]
    assert box.depth() == 4
    # Acknowledging again (a repeated ack) removes nothing.
    assert box.acknowledge([(2, 4)]) == 0
    assert box.acknowledge([]) == 0
    assert box.depth() == 4
    assert box.acknowledge([(1, 10)]) == 4
    assert (box.depth(), box.span()) == (0, 0)
    assert box.last_seq() == 10
    # The inventory is not touched by acknowledgements.
    assert recorder.inventory.quantity(MILK) == 10.0


def test_acknowledge_outside_the_outbox_removes_nothing(recorder: Recorder) -> None:
    _fill(recorder, 3)
    assert recorder.outbox.acknowledge([(4, 100)]) == 0
    assert recorder.outbox.depth() == 3


def test_empty_outbox(conn: sqlite3.Connection) -> None:
    box = Outbox(conn)
    assert box.depth() == 0
    assert box.span() == 0
    assert box.last_seq() == 0
    assert box.pending(after=0, limit=10) == []
