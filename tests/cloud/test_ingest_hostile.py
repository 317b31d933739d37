"""Whatever one device sends, the batch it lands in still stores and acknowledges everyone else.

A property-based test (Hypothesis) throws arbitrary bytes, arbitrary JSON and event-shaped JSON with
arbitrary values at the ingest path, on every device channel, retained or not, beside a valid event
of another device; plus the poisons the issue found, one by one.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import DEAD_LETTERS, EVENTS
from cloud.ingest.batch import BatchProcessor, Message
from cloud.ingest.stats import IngestStats
from shared import topics
from shared.clock import ManualClock
from shared.messages import MAX_BATCH, EventsAcknowledged, ItemAdded, encode

HOSTILE = "fridge-hostile"
NEIGHBOUR = "fridge-neighbour"
# Seqs of the neighbour's events: one new one per example, so each must be stored and acknowledged.
SEQS = itertools.count(1)

EVENT_TYPES = ["item_added", "item_consumed", "event_batch", "telemetry", "availability", "alert_raised"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
# JSON shaped like an event, with arbitrary values where the contract wants particular ones.
EVENT_SHAPED = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES), "device_id": st.sampled_from([HOSTILE, NEIGHBOUR, "", "x+y"])},
    optional={
        "schema_version": st.integers(-2, 3) | JSON,
        "event_id": st.uuids().map(str) | JSON,
        "seq": st.integers(-(2**70), 2**70) | JSON,
        "occurred_at": st.datetimes().map(lambda d: d.isoformat()) | JSON,
        "code": st.text(max_size=20) | JSON,
        "lot_id": st.integers() | JSON,
        "quantity": st.floats() | JSON,
        "events": st.lists(JSON, max_size=3),
        "state": st.sampled_from(["online", "offline", "?"]),
    },
)
PAYLOADS = (
    st.binary(max_size=500)
    | JSON.map(lambda v: json.dumps(v).encode())
    | EVENT_SHAPED.map(lambda v: json.dumps(v).encode())
)
TOPICS = st.sampled_from(
    [topics.device_topic(HOSTILE, channel) for channel in topics.Channel]
    + [topics.events(NEIGHBOUR), "frigo/v1/devices/+/events", "elsewhere", ""]
)


def neighbour_event(seq: int) -> bytes:
    return encode(
        ItemAdded(
            event_id=uuid.uuid4(),
            device_id=NEIGHBOUR,
            seq=seq,
            lot_id=seq,
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
            code="4006381333931",
        )
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    made = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'cloud.db'}")
    create_schema(made)
    yield made
    made.dispose()


Fresh = tuple[Engine, IngestStats, BatchProcessor]


def processor_on(engine: Engine, stats: IngestStats) -> BatchProcessor:
    return BatchProcessor(engine, ManualClock(datetime(2026, 12, 1, tzinfo=UTC)), stats, auto_enroll=True)


@pytest.fixture(scope="module")
def processor(engine: Engine) -> BatchProcessor:
    return processor_on(engine, IngestStats())


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    """A new database, and a processor counting in its own statistics."""
    made = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    create_schema(made)
    stats = IngestStats()
    yield made, stats, processor_on(made, stats)
    made.dispose()


def stored_seqs(engine: Engine, device: str) -> set[int]:
    with engine.connect() as connection:
        return set(connection.execute(select(EVENTS.c.seq).where(EVENTS.c.device_id == device)).scalars())


def acked(acks: list[EventsAcknowledged], device: str) -> set[int]:
    return {
        seq
        for a in acks
        if a.device_id == device
        for first, last in a.ranges
        for seq in range(first, last + 1)
    }


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(topic=TOPICS, payload=PAYLOADS, retained=st.booleans(), first=st.booleans())
def test_no_message_escapes_and_the_neighbour_is_still_stored(
    engine: Engine, processor: BatchProcessor, topic: str, payload: bytes, retained: bool, first: bool
) -> None:
    seq = next(SEQS)
    neighbour: Message = (topics.events(NEIGHBOUR), neighbour_event(seq))
    hostile: Message = (topic, payload, retained)
    batch = [hostile, neighbour] if first else [neighbour, hostile]

    acks = processor.process(batch)

    assert seq in acked(acks, NEIGHBOUR)
    assert seq in stored_seqs(engine, NEIGHBOUR)


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def batch_of(count: int) -> bytes:
    events = [
        json.loads(neighbour_event(seq).replace(NEIGHBOUR.encode(), HOSTILE.encode()))
        for seq in range(1, count + 1)
    ]
    return json.dumps(
        {"schema_version": 1, "type": "event_batch", "device_id": HOSTILE, "events": events}
    ).encode()


POISONS: dict[str, bytes] = {
    "nested-100000": deep(100_000),
    "nested-in-a-batch": b'{"type":"event_batch","device_id":"fridge-hostile","events":['
    + deep(50_000)
    + b"]}",
    "invalid-utf8": b'{"type":"item_added","code":"\xff\xfe"}',
    "number-5000-digits": b'{"type":"item_added","seq":' + b"9" * 5000 + b"}",
    "batch-of-101": batch_of(MAX_BATCH + 1),
    "batch-of-10001": batch_of(10_001),
}


@pytest.mark.parametrize("name", list(POISONS))
def test_a_poison_is_a_dead_letter_and_the_rest_of_its_batch_is_stored(fresh: Fresh, name: str) -> None:
    engine, stats, processor = fresh

    acks = processor.process(
        [(topics.events(HOSTILE), POISONS[name]), (topics.events(NEIGHBOUR), neighbour_event(1))]
    )

    assert acks == [EventsAcknowledged(device_id=NEIGHBOUR, ranges=((1, 1),))]
    assert stored_seqs(engine, HOSTILE) == set(), "nothing of a refused batch is stored"
    assert dict(stats.rejected) == {"invalid_payload": 1}
    with engine.connect() as connection:
        letters = list(connection.execute(select(DEAD_LETTERS)).all())
        assert connection.execute(select(func.count()).select_from(EVENTS)).scalar_one() == 1
    assert [(letter.reason, letter.device_id) for letter in letters] == [("invalid_payload", HOSTILE)]
    if name.startswith("batch-of"):
        assert "a batch holds 1 to 100 events" in letters[0].detail


def test_a_valid_batch_with_another_devices_event_keeps_its_own(fresh: Fresh) -> None:
    engine, stats, processor = fresh
    own = [json.loads(neighbour_event(seq)) for seq in (1, 2)]
    foreign = json.loads(neighbour_event(3).replace(NEIGHBOUR.encode(), HOSTILE.encode()))
    payload = json.dumps(
        {
            "schema_version": 1,
            "type": "event_batch",
            "device_id": NEIGHBOUR,
            "events": [own[0], foreign, own[1]],
        }
    ).encode()

    acks = processor.process([(topics.events(NEIGHBOUR), payload)])

    assert acks == [EventsAcknowledged(device_id=NEIGHBOUR, ranges=((1, 2),))]
    assert dict(stats.rejected) == {"device_mismatch": 1}
    assert stored_seqs(engine, HOSTILE) == set()


@pytest.mark.parametrize("channel", [topics.Channel.EVENTS, topics.Channel.TELEMETRY])
def test_a_retained_message_on_a_devices_stream_is_kept_not_ingested(
    fresh: Fresh, channel: topics.Channel
) -> None:
    engine, stats, processor = fresh
    payload = neighbour_event(1) if channel is topics.Channel.EVENTS else b'{"type":"telemetry"}'

    assert processor.process([(topics.device_topic(NEIGHBOUR, channel), payload, True)]) == []

    assert dict(stats.rejected) == {"retained": 1}
    assert stored_seqs(engine, NEIGHBOUR) == set()
