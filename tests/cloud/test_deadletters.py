"""Dead letters: every rejection is kept, truncated and bounded, and served newest first.

Ingestor.process() on SQLite and PostgreSQL; the endpoint through a real uvicorn and httpx.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from cloud.api.dependencies import MAX_PAGE
from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import DEAD_LETTERS, DEVICES, EVENTS, Device, Household
from cloud.ingest.deadletters import MAX_DEAD_LETTER_BYTES, MAX_TOPIC_CHARS
from cloud.ingest.ingestor import Ingestor
from cloud.ingest.stats import RejectReason
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.clock import ManualClock
from shared.messages import AvailabilityChanged, EventsAcknowledged, encode
from shared.mqtt import MqttSettings
from tests.support.auth import bearer
from tests.support.factories import T0, Message, added, msg
from tests.support.services import free_port, postgres_database

RECEIVED = T0 + timedelta(hours=2)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes that were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dead_letters(engine: Engine) -> list[dict[str, Any]]:
    """Return every stored dead letter, oldest first, without its id."""
    with engine.connect() as conn:
        rows = conn.execute(select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.id)).mappings().all()
    return [
        {
            "received_at": utc(r["received_at"]),
            "topic": r["topic"],
            "device_id": r["device_id"],
            "reason": r["reason"],
            "detail": r["detail"],
            "payload": bytes(r["payload"]),
            "payload_size": r["payload_size"],
        }
        for r in rows
    ]


def count_events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar_one())


@dataclass
class Harness:
    engine: Engine
    auto_enroll: bool = True
    max_dead_letters: int = 10_000
    clock: ManualClock = field(default_factory=lambda: ManualClock(RECEIVED))
    acks: list[EventsAcknowledged] = field(default_factory=list)
    ingestor: Ingestor = field(init=False)

    def __post_init__(self) -> None:
        self.ingestor = Ingestor(
            self.engine,
            self.acks.append,
            self.clock,
            auto_enroll=self.auto_enroll,
            max_dead_letters=self.max_dead_letters,
        )

    def process(self, *messages: Message) -> list[EventsAcknowledged]:
        before = len(self.acks)
        self.ingestor.process(list(messages))
        return self.acks[before:]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def ack(device_id: str, *ranges: tuple[int, int]) -> EventsAcknowledged:
    return EventsAcknowledged(device_id=device_id, ranges=ranges)


# --- one dead letter per reason ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A batch with one rejection in it, and the dead letter it must leave."""

    message: Message
    reason: RejectReason
    device_id: str | None
    payload: bytes  # as stored
    detail: str  # a part of it
    auto_enroll: bool = True
    before: tuple[Message, ...] = ()  # processed first, in a batch of its own


MISMATCHED = added("fridge-1", 50)
RESET = added("fridge-1", 1, code="EGGS", variant="after-reset")  # seq 1 again, another event
# The event id of fridge-1's seq 1, sent again under seq 7: a forged or corrupt id.
FORGED = added("fridge-1", 1).model_copy(update={"seq": 7})
UNKNOWN = added("fridge-9", 1)

CASES = [
    Case(("other/fridge-1/events", b"{}"), RejectReason.INVALID_TOPIC, None, b"{}", "other/fridge-1"),
    Case(
        (topics.events("fridge-1"), b"not json"),
        RejectReason.INVALID_PAYLOAD,
        "fridge-1",
        b"not json",
        "Invalid JSON",
    ),
    Case(
        (topics.events("fridge-2"), encode(MISMATCHED)),
        RejectReason.DEVICE_MISMATCH,
        "fridge-2",
        encode(MISMATCHED),
        "payload names device 'fridge-1'",
    ),
    Case(
        (topics.commands("fridge-1"), b'{"type": "events_acknowledged"}'),
        RejectReason.UNEXPECTED_TOPIC,
        "fridge-1",
        b'{"type": "events_acknowledged"}',
        "do not publish on this channel",
    ),
    Case(
        msg(UNKNOWN),
        RejectReason.UNKNOWN_DEVICE,
        "fridge-9",
        encode(UNKNOWN),
        "not enrolled",
        auto_enroll=False,
    ),
    Case(
        msg(RESET),
        RejectReason.SEQ_CONFLICT,
        "fridge-1",
        encode(RESET),
        "seq 1 already holds event",
        before=(msg(added("fridge-1", 1)),),
    ),
    Case(
        msg(FORGED),
        RejectReason.EVENT_ID_CONFLICT,
        "fridge-1",
        encode(FORGED),
        "already stored for another seq",
        before=(msg(added("fridge-1", 1)),),
    ),
    Case(
        (topics.events("fridge-1"), encode(added("fridge-1", 3)), True),
        RejectReason.RETAINED,
        "fridge-1",
        encode(added("fridge-1", 3)),
        "retained on a device's stream",
    ),
]


def _enroll(engine: Engine, device_id: str) -> None:
    with Session(engine) as session:
        session.add(Household(id=f"hh-{device_id}", name="by hand", created_at=T0))
        session.commit()
        session.add(Device(id=device_id, household_id=f"hh-{device_id}", created_at=T0))
        session.commit()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.reason.value)
def test_each_rejection_is_stored_as_a_dead_letter_with_the_batch(engine: Engine, case: Case) -> None:
    harness = Harness(engine, auto_enroll=case.auto_enroll)
    if not case.auto_enroll:
        _enroll(engine, "fridge-1")
    for message in case.before:
        harness.process(message)
    harness.clock.advance(timedelta(minutes=1))

    acks = harness.process(case.message, msg(added("fridge-1", 2)))

    assert acks == [ack("fridge-1", (2, 2))]
    (letter,) = dead_letters(engine)
    assert case.detail in letter.pop("detail")
    assert letter == {
        "received_at": RECEIVED + timedelta(minutes=1),
        "topic": case.message[0],
        "device_id": case.device_id,
        "reason": case.reason.value,
        "payload": case.payload,
        "payload_size": len(case.payload),
    }
    stats = harness.ingestor.stats
    assert stats.rejected == {case.reason.value: 1}
    assert (stats.dead_letters, stats.dead_letter_failures) == (1, 0)


def test_reasons_cover_every_rejection_the_ingestor_counts() -> None:
    assert [case.reason for case in CASES] == list(RejectReason)


def test_payload_is_truncated_and_odd_bytes_topics_and_sizes_survive(engine: Engine) -> None:
    harness = Harness(engine)
    big = b"[" + b"x" * (3 * MAX_DEAD_LETTER_BYTES)
    binary = b"\xff\xfe\x00garbage"
    long_topic = "frigo/v1/devices/" + "a" * 400 + "/events"

    harness.process(
        (topics.events("fridge-1"), big), (topics.events("fridge-1"), binary), (long_topic, b"{}")
    )

    big_letter, binary_letter, topic_letter = dead_letters(engine)
    assert big_letter["payload"] == big[:MAX_DEAD_LETTER_BYTES]
    assert big_letter["payload_size"] == len(big)
    assert binary_letter["payload"] == binary
    assert binary_letter["payload_size"] == len(binary)
    assert topic_letter["topic"] == long_topic[:MAX_TOPIC_CHARS]
    assert topic_letter["reason"] == "invalid_topic"
    assert topic_letter["device_id"] is None


def test_a_batch_of_only_rejects_commits_its_dead_letters_alone(engine: Engine) -> None:
    harness = Harness(engine)

    assert harness.process((topics.events("x"), b"nope"), ("x/y", b"{}")) == []

    assert [(d["topic"], d["reason"]) for d in dead_letters(engine)] == [
        (topics.events("x"), "invalid_payload"),
        ("x/y", "invalid_topic"),
    ]
    assert harness.ingestor.stats.batches == 0
    assert harness.ingestor.stats.dead_letters == 2
    assert count_events(engine) == 0


def test_presence_batch_of_an_unknown_device_keeps_its_dead_letters(engine: Engine) -> None:
    """No other write in the transaction: the savepoint is its first statement."""
    harness = Harness(engine, auto_enroll=False)
    telemetry = (topics.telemetry("fridge-9"), b'{"type": "nonsense"}')
    availability = (topics.availability("fridge-9"), b'{"schema_version": 1}')
    online = AvailabilityChanged.model_validate({"device_id": "fridge-8", "state": "online", "since": T0})

    harness.process(telemetry, availability, (topics.availability("fridge-8"), encode(online)))

    assert [(d["device_id"], d["reason"]) for d in dead_letters(engine)] == [
        ("fridge-9", "invalid_payload"),
        ("fridge-9", "invalid_payload"),
    ]
    assert harness.ingestor.stats.dead_letters == 2
    assert harness.ingestor.stats.batches == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DEVICES)).scalar_one() == 0


def test_dead_letters_roll_back_with_a_failed_batch(engine: Engine) -> None:
    harness = Harness(engine)
    EVENTS.drop(engine)

    with pytest.raises(Exception, match="events"):
        harness.process((topics.events("fridge-1"), b"junk"), msg(added("fridge-1", 1)))

    # One transaction: the batch failed, so the dead letter is gone with it (the device resends).
    assert dead_letters(engine) == []
    assert harness.ingestor.stats.dead_letters == 0


def test_failing_dead_letter_write_is_logged_and_ingestion_goes_on(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(engine)
    DEAD_LETTERS.drop(engine)
    caplog.set_level(logging.ERROR, logger="cloud.ingest.deadletters")

    acks = harness.process((topics.events("fridge-1"), b"junk"), msg(added("fridge-1", 1)))
    alone = harness.process(("x/y", b"{}"))

    assert acks == [ack("fridge-1", (1, 1))]
    assert alone == []
    assert count_events(engine) == 1
    stats = harness.ingestor.stats
    assert (stats.dead_letters, stats.dead_letter_failures, stats.rejected_total) == (0, 2, 2)
    errors = [r for r in caplog.records if r.name == "cloud.ingest.deadletters"]
    assert [r.getMessage() for r in errors] == [
        "could not store 1 dead letters; ingestion goes on without them"
    ] * 2
    assert all(r.exc_info for r in errors)

    DEAD_LETTERS.create(engine)
    assert harness.process((topics.events("fridge-1"), b"junk"), msg(added("fridge-1", 2))) == [
        ack("fridge-1", (2, 2))
    ]
    assert len(dead_letters(engine)) == 1
    assert stats.dead_letters == 1


# --- the bound --------------------------------------------------------------------------------


def _junk(n: int) -> Message:
    return topics.events("fridge-1"), f"junk {n}".encode()


def test_table_keeps_only_the_newest_rows(engine: Engine) -> None:
    harness = Harness(engine, max_dead_letters=5)

    for start in range(0, 12, 3):  # 4 batches of 3 rejects; the last two with an event
        harness.process(*(_junk(n) for n in range(start, start + 3)))
    assert [d["payload"] for d in dead_letters(engine)] == [f"junk {n}".encode() for n in range(7, 12)]

    harness.process(*(_junk(n) for n in range(100, 108)), msg(added("fridge-1", 1)))  # 8 in one batch

    assert [d["payload"] for d in dead_letters(engine)] == [f"junk {n}".encode() for n in range(103, 108)]
    assert harness.ingestor.stats.dead_letters == 20
    assert count_events(engine) == 1


def test_bound_of_zero_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        Harness(engine, max_dead_letters=0)


# --- GET /admin/dead-letters ------------------------------------------------------------------


def start_service(database_url: str) -> CloudService:
    """A worker serving HTTP on a free port; its MQTT broker does not exist (it keeps retrying)."""
    settings = CloudSettings(
        database_url=database_url,
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        http_port=0,
        client_id=f"frigo-dl-test-{uuid.uuid4().hex[:8]}",
        auto_enroll=True,
    )
    service = CloudService(settings, ManualClock(RECEIVED))
    service.start()
    return service


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A worker with 7 dead letters (ids ascending in this order), and a client of its API.

    1 fridge-a invalid_payload "a-1"   2 fridge-b invalid_payload "b-1"   3 - invalid_topic
    4 fridge-a device_mismatch         5 fridge-a invalid_payload "a-2"   6 fridge-b unexpected_topic
    7 fridge-a invalid_payload (not UTF-8, longer than kept)
    """
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('deadletters') / 'cloud.db'}"
        else:
            url = stack.enter_context(postgres_database())
        service = start_service(url)
        stack.callback(service.stop)
        process = service.ingestor.process
        process([(topics.events("fridge-a"), b"a-1"), (topics.events("fridge-b"), b"b-1")])
        process([("nowhere", b"{}"), (topics.events("fridge-a"), encode(added("fridge-z", 1)))])
        process([(topics.events("fridge-a"), b"a-2"), (topics.commands("fridge-b"), b"cmd")])
        process([(topics.events("fridge-a"), b"\xffbad\xfe" + b"y" * MAX_DEAD_LETTER_BYTES)])
        client = stack.enter_context(
            httpx.Client(base_url=service.url, timeout=10, headers=bearer(service.engine))
        )
        yield client


def _get(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/admin/dead-letters", params=params)
    assert response.status_code == 200, response.text
    letters: list[dict[str, Any]] = response.json()
    return letters


def _payloads(letters: list[dict[str, Any]]) -> list[str]:
    return [letter["payload"] for letter in letters]


# How the API shows the fixture's payloads: the bytes that are not UTF-8 as \xNN escapes.
NOT_UTF8 = "\\xffbad\\xfe" + "y" * (MAX_DEAD_LETTER_BYTES - 5)
MISMATCH = encode(added("fridge-z", 1)).decode()


def test_dead_letters_come_newest_first_with_every_field(served: httpx.Client) -> None:
    letters = _get(served)

    assert len(letters) == 7
    ids = [letter["id"] for letter in letters]
    assert ids == sorted(ids, reverse=True)
    assert [(letter["device_id"], letter["reason"]) for letter in letters] == [
        ("fridge-a", "invalid_payload"),
        ("fridge-b", "unexpected_topic"),
        ("fridge-a", "invalid_payload"),
        ("fridge-a", "device_mismatch"),
        (None, "invalid_topic"),
        ("fridge-b", "invalid_payload"),
        ("fridge-a", "invalid_payload"),
    ]
    newest, *_, oldest = letters
    assert oldest == {
        "id": ids[-1],
        "received_at": RECEIVED.isoformat().replace("+00:00", "Z"),
        "topic": topics.events("fridge-a"),
        "device_id": "fridge-a",
        "reason": "invalid_payload",
        "detail": oldest["detail"],
        "payload": "a-1",
        "payload_size": 3,
        "payload_truncated": False,
    }
    assert oldest["detail"]
    # Bytes that are not UTF-8 come back as \xNN escapes; the size is the one received.
    assert newest["payload"] == NOT_UTF8
    assert newest["payload_size"] == 5 + MAX_DEAD_LETTER_BYTES
    assert newest["payload_truncated"] is True


def test_dead_letters_page_with_before_id(served: httpx.Client) -> None:
    everything = _get(served)

    first = _get(served, limit=3)
    second = _get(served, limit=3, before_id=first[-1]["id"])
    third = _get(served, limit=3, before_id=second[-1]["id"])

    assert [len(first), len(second), len(third)] == [3, 3, 1]
    assert first + second + third == everything
    assert _get(served, before_id=third[-1]["id"]) == []
    assert _get(served, before_id=everything[2]["id"], limit=1) == [everything[3]]
    assert _get(served, limit=MAX_PAGE) == everything


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"device_id": "fridge-a"},
            [NOT_UTF8, "a-2", MISMATCH, "a-1"],
        ),
        ({"device_id": "fridge-b"}, ["cmd", "b-1"]),
        ({"device_id": "fridge-c"}, []),
        ({"reason": "invalid_payload"}, [NOT_UTF8, "a-2", "b-1", "a-1"]),
        ({"reason": "invalid_topic"}, ["{}"]),
        ({"reason": "seq_conflict"}, []),
        ({"reason": "invalid_payload", "device_id": "fridge-b"}, ["b-1"]),
        ({"reason": "invalid_payload", "device_id": "fridge-a", "limit": 2}, [NOT_UTF8, "a-2"]),
    ],
    ids=str,
)
def test_dead_letters_filter_by_device_and_reason(
    served: httpx.Client, params: dict[str, Any], expected: list[str]
) -> None:
    assert _payloads(_get(served, **params)) == expected


def test_filters_combine_with_paging(served: httpx.Client) -> None:
    newest = _get(served, reason="invalid_payload", device_id="fridge-a", limit=2)
    older = _get(served, reason="invalid_payload", device_id="fridge-a", before_id=newest[-1]["id"])
    assert _payloads(newest) == [NOT_UTF8, "a-2"]
    assert _payloads(older) == ["a-1"]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": MAX_PAGE + 1},
        {"before_id": 0},
        {"reason": "bad_luck"},
        {"device_id": "x" * 65},
    ],
    ids=str,
)
def test_dead_letters_reject_bad_queries(served: httpx.Client, query: dict[str, Any]) -> None:
    response = served.get("/admin/dead-letters", params=query)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", next(iter(query))]


def test_the_bound_and_log_format_come_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRIGO_CLOUD_MAX_DEAD_LETTERS", "2")
    monkeypatch.setenv("FRIGO_CLOUD_LOG_FORMAT", "json")
    service = start_service(database_url)
    try:
        assert (service.settings.max_dead_letters, service.settings.log_format) == (2, "json")
        service.ingestor.process([_junk(n) for n in range(5)])
        with httpx.Client(base_url=service.url, timeout=10, headers=bearer(service.engine)) as client:
            letters = _get(client)
    finally:
        service.stop()

    assert _payloads(letters) == ["junk 4", "junk 3"]


@pytest.mark.parametrize("setting", [{"max_dead_letters": 0}, {"log_format": "yaml"}], ids=str)
def test_settings_refuse_a_bound_below_one_and_unknown_log_formats(setting: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(setting))):
        CloudSettings.model_validate(setting)
