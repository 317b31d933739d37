"""Ingestor.process() driven directly (no thread, no broker) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import DEVICES, EVENTS, HOUSEHOLDS, Device, Household
from cloud.identity.devices import household_id_for
from cloud.ingest.ingestor import Ingestor
from shared import topics
from shared.clock import ManualClock
from shared.messages import (
    AvailabilityChanged,
    EventsAcknowledged,
    ItemAdded,
    TelemetryReported,
    encode,
)
from tests.support.factories import T0, Message, StockEvent, added, event_id, msg, removed


def ack(device_id: str, *ranges: tuple[int, int]) -> EventsAcknowledged:
    return EventsAcknowledged(device_id=device_id, ranges=ranges)


def utc(value: datetime | None) -> datetime | None:
    """Normalize what the database returns: SQLite gives naive datetimes stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Harness:
    """An Ingestor on a fresh database, recording every acknowledgement it sends."""

    engine: Engine
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    acks: list[EventsAcknowledged] = field(default_factory=list)
    auto_enroll: bool = True
    ingestor: Ingestor = field(init=False)

    def __post_init__(self) -> None:
        self.ingestor = Ingestor(self.engine, self.acks.append, self.clock, auto_enroll=self.auto_enroll)

    def process(self, *messages: Message) -> list[EventsAcknowledged]:
        """Process one batch; return the acknowledgements it sent."""
        before = len(self.acks)
        self.ingestor.process(list(messages))
        return self.acks[before:]

    def rows(self) -> list[tuple[str, int, str, str | None, int, uuid.UUID]]:
        """Return (device, seq, household, code, delta, event_id) of every stored event."""
        with self.engine.connect() as conn:
            result = conn.execute(
                select(
                    EVENTS.c.device_id,
                    EVENTS.c.seq,
                    EVENTS.c.household_id,
                    EVENTS.c.code,
                    EVENTS.c.quantity_delta,
                    EVENTS.c.event_id,
                ).order_by(EVENTS.c.device_id, EVENTS.c.seq)
            ).all()
        return [(str(d), int(s), str(h), c, int(q), uuid.UUID(str(e))) for d, s, h, c, q, e in result]

    def count(self) -> int:
        return count_events(self.engine)

    def households(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            result = conn.execute(select(HOUSEHOLDS.c.id, HOUSEHOLDS.c.name).order_by(HOUSEHOLDS.c.id)).all()
        return [(str(i), str(n)) for i, n in result]

    def devices(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(select(DEVICES)).mappings().all()
        return {
            str(row["id"]): {
                "household_id": row["household_id"],
                "online": bool(row["online"]),
                "outbox_depth": row["outbox_depth"],
                "last_seen_at": utc(row["last_seen_at"]),
                "created_at": utc(row["created_at"]),
            }
            for row in result
        }


def count_events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar_one())


def inventory(engine: Engine) -> dict[str, dict[str, float]]:
    """Return household -> code -> quantity, aggregated as the API does (quantity > 0 only)."""
    total = func.sum(EVENTS.c.quantity_delta)
    with engine.connect() as conn:
        result = conn.execute(
            select(EVENTS.c.household_id, EVENTS.c.code, total)
            .where(EVENTS.c.code.is_not(None))
            .group_by(EVENTS.c.household_id, EVENTS.c.code)
            .having(total > 0)
        ).all()
    stock: dict[str, dict[str, float]] = {}
    for household_id, code, quantity in result:
        stock.setdefault(str(household_id), {})[str(code)] = float(quantity)
    return stock


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def harness(engine: Engine) -> Harness:
    return Harness(engine)


# --- storing and acknowledging ---------------------------------------------------------------


def test_valid_batch_is_stored_acked_and_device_enrolled(harness: Harness) -> None:
    events = [added("fridge-1", seq, code=f"C{seq}", quantity=seq) for seq in range(1, 6)]

    acks = harness.process(*(msg(e) for e in events))

    assert acks == [ack("fridge-1", (1, 5))]
    assert harness.rows() == [
        ("fridge-1", seq, "hh-fridge-1", f"C{seq}", seq, event_id("fridge-1", seq)) for seq in range(1, 6)
    ]
    stats = harness.ingestor.stats
    assert (stats.received, stats.stored, stats.duplicates, stats.rejected_total, stats.batches) == (
        5,
        5,
        0,
        0,
        1,
    )
    assert household_id_for("fridge-1") == "hh-fridge-1"
    assert harness.households() == [("hh-fridge-1", "Household of fridge fridge-1")]
    assert harness.devices() == {
        "fridge-1": {
            "household_id": "hh-fridge-1",
            "online": False,  # events say nothing of the connection: its availability will
            "outbox_depth": None,
            "last_seen_at": None,
            "created_at": T0,
        }
    }


def test_removals_store_negative_deltas_and_received_at_comes_from_the_clock(harness: Harness) -> None:
    harness.clock.advance(timedelta(minutes=3))
    harness.process(
        msg(added("f", 1, code="EGGS", quantity=6)), msg(removed("f", 2, code="EGGS", quantity=2))
    )

    assert [(seq, code, delta) for _, seq, _, code, delta, _ in harness.rows()] == [
        (1, "EGGS", 6),
        (2, "EGGS", -2),
    ]
    with harness.engine.connect() as conn:
        stored = conn.execute(
            select(EVENTS.c.type, EVENTS.c.occurred_at, EVENTS.c.received_at, EVENTS.c.payload).order_by(
                EVENTS.c.seq
            )
        ).all()
    assert [(t, utc(o), utc(r)) for t, o, r, _ in stored] == [
        ("item_added", T0 + timedelta(seconds=1), T0 + timedelta(minutes=3)),
        ("item_consumed", T0 + timedelta(seconds=2), T0 + timedelta(minutes=3)),
    ]
    assert json.loads(stored[1][3]) == json.loads(encode(removed("f", 2, code="EGGS", quantity=2)))
    assert inventory(harness.engine) == {"hh-f": {"EGGS": 4}}


def test_one_ack_per_device_with_compressed_ranges(harness: Harness) -> None:
    batch = [msg(added("a", s)) for s in (3, 1, 2, 5)] + [msg(added("b", s)) for s in (7, 1, 2, 4)]
    # Interleave the devices: the acks must still be one per device.
    batch = [m for pair in zip(batch[:4], batch[4:], strict=True) for m in pair]

    acks = harness.process(*batch)

    assert sorted(acks, key=lambda a: a.device_id) == [
        ack("a", (1, 3), (5, 5)),
        ack("b", (1, 2), (4, 4), (7, 7)),
    ]
    assert harness.count() == 8
    assert harness.households() == [("hh-a", "Household of fridge a"), ("hh-b", "Household of fridge b")]


def test_acknowledgement_is_sent_only_after_commit(engine: Engine) -> None:
    seen_at_ack: list[int] = []

    def acknowledge(_ack: EventsAcknowledged) -> None:
        # Another connection must already see the committed rows.
        seen_at_ack.append(count_events(engine))

    ingestor = Ingestor(engine, acknowledge, ManualClock(T0))
    ingestor.process([msg(added("f", s)) for s in range(1, 4)])

    assert seen_at_ack == [3]


def test_redelivery_in_later_batch_and_within_batch_stores_nothing_new_and_acks_again(
    harness: Harness,
) -> None:
    events = [added("fridge-1", seq) for seq in range(1, 6)]
    assert harness.process(*(msg(e) for e in events)) == [ack("fridge-1", (1, 5))]

    # The same events again, in a later batch.
    assert harness.process(*(msg(e) for e in events)) == [ack("fridge-1", (1, 5))]
    assert harness.count() == 5
    assert harness.ingestor.stats.stored == 5
    assert harness.ingestor.stats.duplicates == 5

    # Already stored and duplicated inside one batch, mixed with one new event.
    redelivered = [msg(events[1]), msg(events[1]), msg(events[3]), msg(added("fridge-1", 6))]
    assert harness.process(*redelivered) == [ack("fridge-1", (2, 2), (4, 4), (6, 6))]
    assert harness.count() == 6
    assert harness.ingestor.stats.stored == 6
    # 5 + the in-batch copy of seq 2 + seq 2 and seq 4 already stored.
    assert harness.ingestor.stats.duplicates == 8
    assert harness.ingestor.stats.rejected_total == 0

    # New events duplicated inside the batch that first delivers them: stored once, acked once.
    fresh = [added("fridge-1", 7), added("fridge-1", 8)]
    assert harness.process(msg(fresh[0]), msg(fresh[1]), msg(fresh[0])) == [ack("fridge-1", (7, 8))]
    assert [seq for _, seq, *_ in harness.rows()] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert harness.ingestor.stats.stored == 8


def test_duplicates_within_one_batch_are_counted(harness: Harness) -> None:
    e1, e2 = added("f", 1), added("f", 2)

    harness.process(msg(e1), msg(e2), msg(e1), msg(e1))

    stats = harness.ingestor.stats
    assert (stats.received, stats.stored, stats.duplicates) == (4, 2, 2)


def test_random_redelivery_stores_each_event_exactly_once(
    harness: Harness, engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(20240501)
    devices = [f"fridge-{n}" for n in range(5)]
    codes = ["MILK", "EGGS", "BUTTER", "4006381333931", "APPLE", "CHEESE"]
    events: list[StockEvent] = []
    for device_id in devices:
        for seq in range(1, 2001):
            code, quantity = rng.choice(codes), rng.randint(1, 3)
            if rng.random() < 0.35:
                events.append(removed(device_id, seq, code=code, quantity=quantity))
            else:
                events.append(added(device_id, seq, code=code, quantity=quantity))
    assert len(events) == 10_000

    deliveries = [msg(e) for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    assert len(deliveries) > 15_000  # really duplicated
    for start in range(0, len(deliveries), 500):
        harness.process(*deliveries[start : start + 500])

    assert harness.count() == 10_000
    assert harness.ingestor.stats.stored == 10_000
    assert harness.ingestor.stats.received == len(deliveries)
    assert harness.ingestor.stats.rejected_total == 0
    acked: dict[str, set[int]] = {}
    for a in harness.acks:
        for first, last in a.ranges:
            acked.setdefault(a.device_id, set()).update(range(first, last + 1))
    assert acked == {device_id: set(range(1, 2001)) for device_id in devices}
    stored_ids = {row[5] for row in harness.rows()}
    assert stored_ids == {e.event_id for e in events}

    # The same events, once each and in order, into a database of their own.
    baseline_engine = create_db_engine(f"sqlite:///{tmp_path / 'baseline.db'}")
    create_schema(baseline_engine)
    try:
        baseline = Harness(baseline_engine)
        for start in range(0, len(events), 500):
            baseline.process(*(msg(e) for e in events[start : start + 500]))
        expected_stock = inventory(baseline_engine)
    finally:
        baseline_engine.dispose()

    computed: dict[str, dict[str, float]] = {}
    for e in events:
        sign = 1 if isinstance(e, ItemAdded) else -1
        stock = computed.setdefault(household_id_for(e.device_id), {})
        stock[e.code] = stock.get(e.code, 0.0) + sign * e.quantity
    assert expected_stock == {
        hh: {code: q for code, q in stock.items() if q > 0} for hh, stock in computed.items()
    }
    assert inventory(engine) == expected_stock


# --- rejected messages -----------------------------------------------------------------------


def _event_json(**changes: Any) -> bytes:
    body = json.loads(encode(added("fridge-1", 50)))
    body.update(changes)
    return json.dumps(body).encode()


def _without(key: str) -> bytes:
    body = json.loads(encode(added("fridge-1", 50)))
    del body[key]
    return json.dumps(body).encode()


INVALID: list[Any] = [
    pytest.param(
        topics.events("fridge-1"), b'{"type": "item_added", "seq": ', "invalid_payload", id="malformed-json"
    ),
    pytest.param(
        topics.events("fridge-1"), _event_json(type="item_moved"), "invalid_payload", id="unknown-type"
    ),
    pytest.param(topics.events("fridge-1"), _event_json(schema_version=2), "invalid_payload", id="version-2"),
    pytest.param(topics.events("fridge-1"), _without("occurred_at"), "invalid_payload", id="missing-field"),
    pytest.param(topics.events("fridge-1"), _event_json(seq=0), "invalid_payload", id="seq-zero"),
    pytest.param(topics.events("fridge-1"), b"", "invalid_payload", id="empty"),
    pytest.param(
        topics.telemetry("fridge-1"), b'{"type": "telemetry"}', "invalid_payload", id="bad-telemetry"
    ),
    pytest.param(
        topics.availability("fridge-1"), _event_json(), "invalid_payload", id="event-on-availability"
    ),
    pytest.param("frigo/v2/devices/fridge-1/events", encode(added("fridge-1", 50)), "invalid_topic", id="v2"),
    pytest.param("other/fridge-1/events", encode(added("fridge-1", 50)), "invalid_topic", id="foreign"),
    pytest.param(
        "frigo/v1/devices/fridge-1/events/x", encode(added("fridge-1", 50)), "invalid_topic", id="channel"
    ),
    pytest.param(
        "frigo/v1/devices/bad+id/events", encode(added("fridge-1", 50)), "invalid_topic", id="bad-device"
    ),
    pytest.param(topics.events("fridge-2"), encode(added("fridge-1", 50)), "device_mismatch", id="mismatch"),
    pytest.param(topics.commands("fridge-1"), encode(ack("fridge-1", (1, 1))), "unexpected_topic", id="cmd"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), INVALID)
def test_invalid_message_is_rejected_logged_and_does_not_stop_ingestion(
    harness: Harness, caplog: pytest.LogCaptureFixture, topic: str, payload: bytes, reason: str
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud.ingest.batch")

    acks = harness.process((topic, payload), msg(added("fridge-1", 1)))

    assert acks == [ack("fridge-1", (1, 1))]
    assert harness.ingestor.stats.rejected == Counter({reason: 1})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "cloud.ingest.batch"]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith(f"rejected message on {topic} ({reason}): ")

    assert harness.process(msg(added("fridge-1", 2))) == [ack("fridge-1", (2, 2))]
    assert [(d, seq) for d, seq, *_ in harness.rows()] == [("fridge-1", 1), ("fridge-1", 2)]
    # Nothing was enrolled from the rejected message (a mismatch names fridge-2 in its topic).
    assert harness.households() == [("hh-fridge-1", "Household of fridge fridge-1")]
    stats = harness.ingestor.stats
    assert (stats.received, stats.stored, stats.duplicates, stats.batches) == (3, 2, 0, 2)


def test_batch_of_only_invalid_messages_touches_nothing(harness: Harness) -> None:
    assert harness.process((topics.events("x"), b"nope"), ("x/y", b"{}")) == []
    assert harness.ingestor.stats.rejected == Counter({"invalid_payload": 1, "invalid_topic": 1})
    assert harness.ingestor.stats.batches == 0
    assert harness.count() == 0
    assert harness.households() == []


def test_seq_conflict_is_rejected_and_not_acknowledged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud.ingest.batch")
    original = added("fridge-1", 1, code="MILK")
    assert harness.process(msg(original)) == [ack("fridge-1", (1, 1))]

    # The device's database was reset: seq 1 comes back as a different event.
    reused = added("fridge-1", 1, code="EGGS", variant="after-reset")
    assert reused.event_id != original.event_id
    acks = harness.process(msg(reused), msg(added("fridge-1", 2)))

    assert acks == [ack("fridge-1", (2, 2))]
    assert harness.rows() == [
        ("fridge-1", 1, "hh-fridge-1", "MILK", 1, original.event_id),
        ("fridge-1", 2, "hh-fridge-1", "MILK", 1, event_id("fridge-1", 2)),
    ]
    stats = harness.ingestor.stats
    assert stats.rejected == Counter({"seq_conflict": 1})
    assert (stats.stored, stats.duplicates) == (2, 0)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert messages[0].startswith(f"rejected message on {topics.events('fridge-1')} (seq_conflict): seq 1 ")
    assert str(original.event_id) in messages[0]

    # Sent again, it is still refused and still not acknowledged.
    assert harness.process(msg(reused)) == []
    assert stats.rejected == Counter({"seq_conflict": 2})
    assert harness.count() == 2


def test_seq_conflict_within_one_batch_is_not_acknowledged(harness: Harness) -> None:
    current = added("fridge-1", 1, code="NEW", variant="after-reset")
    stale = added("fridge-1", 1, code="OLD")

    acks = harness.process(msg(current), msg(stale))

    assert harness.count() == 1
    assert harness.ingestor.stats.rejected == Counter({"seq_conflict": 1})
    assert acks == []


def test_unknown_device_is_rejected_without_auto_enrolment_until_enrolled(engine: Engine) -> None:
    harness = Harness(engine, auto_enroll=False)
    events = [added("fridge-9", 1), added("fridge-9", 2)]
    telemetry = TelemetryReported(device_id="fridge-9", occurred_at=T0, outbox_depth=2, uptime_s=5)

    acks = harness.process(*(msg(e) for e in events), (topics.telemetry("fridge-9"), encode(telemetry)))

    assert acks == []
    assert harness.ingestor.stats.rejected == Counter({"unknown_device": 2})
    assert harness.count() == 0
    assert harness.households() == []
    assert harness.devices() == {}

    with Session(engine) as session:
        session.add(Household(id="kitchen", name="The kitchen", created_at=T0))
        session.commit()
        session.add(Device(id="fridge-9", household_id="kitchen", created_at=T0))
        session.commit()

    acks = harness.process(*(msg(e) for e in events))

    assert acks == [ack("fridge-9", (1, 2))]
    assert [(d, seq, hh) for d, seq, hh, *_ in harness.rows()] == [
        ("fridge-9", 1, "kitchen"),
        ("fridge-9", 2, "kitchen"),
    ]
    assert harness.households() == [("kitchen", "The kitchen")]
    assert harness.ingestor.stats.rejected == Counter({"unknown_device": 2})
    assert harness.ingestor.stats.stored == 2


# --- presence ---------------------------------------------------------------------------------


def _availability(device_id: str, state: str, since: datetime) -> Message:
    message = AvailabilityChanged.model_validate({"device_id": device_id, "state": state, "since": since})
    return topics.availability(device_id), encode(message)


def _telemetry(device_id: str, depth: int, at: datetime) -> Message:
    report = TelemetryReported(device_id=device_id, occurred_at=at, outbox_depth=depth, uptime_s=12.5)
    return topics.telemetry(device_id), encode(report)


def test_availability_and_telemetry_update_the_device_row(harness: Harness) -> None:
    harness.process(msg(added("fridge-1", 1)))
    assert harness.devices()["fridge-1"]["online"] is False  # never said online
    harness.process(_availability("fridge-1", "online", T0))
    assert harness.devices()["fridge-1"]["online"] is True

    assert harness.process(_availability("fridge-1", "offline", T0 + timedelta(minutes=1))) == []
    device = harness.devices()["fridge-1"]
    assert (device["online"], device["outbox_depth"], device["last_seen_at"]) == (False, None, None)

    seen = T0 + timedelta(minutes=5)
    harness.process(_telemetry("fridge-1", 7, seen), _availability("fridge-1", "online", seen))
    device = harness.devices()["fridge-1"]
    assert (device["online"], device["outbox_depth"], device["last_seen_at"]) == (True, 7, seen)

    # Within one batch the later telemetry wins.
    later = T0 + timedelta(minutes=6)
    harness.process(_telemetry("fridge-1", 3, seen), _telemetry("fridge-1", 0, later))
    device = harness.devices()["fridge-1"]
    assert (device["online"], device["outbox_depth"], device["last_seen_at"]) == (True, 0, later)

    assert harness.count() == 1
    assert harness.ingestor.stats.batches == 5
    assert harness.ingestor.stats.rejected_total == 0


def test_presence_of_a_new_device_enrolls_it(harness: Harness) -> None:
    seen = T0 + timedelta(hours=1)

    harness.process(_telemetry("fridge-7", 4, seen))

    assert harness.households() == [("hh-fridge-7", "Household of fridge fridge-7")]
    assert harness.devices() == {
        "fridge-7": {
            "household_id": "hh-fridge-7",
            "online": False,  # seen, but only its availability says it is connected
            "outbox_depth": 4,
            "last_seen_at": seen,
            "created_at": T0,
        }
    }
    assert harness.acks == []


# --- a failing batch --------------------------------------------------------------------------


def test_failed_batch_does_not_poison_the_next_one(harness: Harness, engine: Engine) -> None:
    events = [added("fridge-1", seq) for seq in range(1, 4)]
    # Enrolment of fridge-1 succeeds inside the transaction; storing its events then fails.
    EVENTS.drop(engine)
    with pytest.raises(DBAPIError, match="events"):
        harness.process(*(msg(e) for e in events))

    assert harness.acks == []
    assert harness.households() == []  # the enrolment was rolled back
    assert harness.ingestor.stats.batches == 0
    assert harness.ingestor.stats.stored == 0

    EVENTS.create(engine)
    # Had the Ingestor cached fridge-1's household from the failed batch, it would skip the
    # enrolment and this insert would break the devices foreign key.
    acks = harness.process(*(msg(e) for e in events))

    assert acks == [ack("fridge-1", (1, 3))]
    assert [(d, seq, hh) for d, seq, hh, *_ in harness.rows()] == [
        ("fridge-1", 1, "hh-fridge-1"),
        ("fridge-1", 2, "hh-fridge-1"),
        ("fridge-1", 3, "hh-fridge-1"),
    ]
    assert harness.households() == [("hh-fridge-1", "Household of fridge fridge-1")]
    assert (harness.ingestor.stats.stored, harness.ingestor.stats.batches) == (3, 1)


def test_a_batch_is_stored_in_each_devices_seq_order(harness: Harness) -> None:
    # paho may deliver a message resent around a reconnect after the ones published after it.
    harness.process(msg(added("fridge-2", 2)), msg(added("fridge-1", 2)), msg(added("fridge-1", 1)))

    with harness.engine.connect() as conn:
        stored = conn.execute(select(EVENTS.c.device_id, EVENTS.c.seq).order_by(EVENTS.c.id)).all()
    # Each device's events in seq order; devices in their order of arrival.
    assert [tuple(r) for r in stored] == [("fridge-2", 2), ("fridge-1", 1), ("fridge-1", 2)]
