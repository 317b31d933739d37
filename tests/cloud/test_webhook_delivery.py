"""Webhook delivery end to end: a real HTTP receiver on 127.0.0.1, a real database, a manual clock.

The sender is driven directly (``WebhookSender.send_due``) with a :class:`ManualClock`, so a retry is
tested by moving the clock, never by sleeping. The receiver answers each request with the status
the test sets and keeps what it got, so every delivery is checked the way a retailer would check
it: with :func:`cloud.outbox.signing.verify` and the endpoint's secret.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select, text, update
from sqlmodel import Session

from cloud.db.engine import as_utc, create_db_engine, create_schema
from cloud.db.tables import RETAILERS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from cloud.identity.retailers import create_retailer
from cloud.outbox import deliveries, egress
from cloud.outbox.deliveries import BACKOFF_S, JITTER, LEASE, WebhookSender, backoff
from cloud.outbox.egress import EgressRefused, check_url
from cloud.outbox.lane import PER_RETAILER, WebhookLane
from cloud.outbox.signing import WebhookVerificationError, new_secret, verify
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.clock import ManualClock
from shared.mqtt import MqttSettings
from tests.support.services import free_port, postgres_database
from tests.support.slow import NO_CONTENT, SlowReceiver

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DATA = {"id": "ord-1", "status": "created", "total": 4.5}


# -- the receiver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])

    def verify(self, *secrets: str) -> None:
        """Check it as a retailer holding ``secrets`` would, at the time it was sent."""
        verify(list(secrets), self.headers, self.body, self.timestamp)


class Receiver:
    """A retailer's HTTP server on 127.0.0.1: answers as told, per path, and records every request."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self._answers: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._record(self.path, headers, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        """Answer requests to ``path`` with these statuses in turn; the last one repeats (else 204)."""
        with self._lock:
            self._answers[path] = list(statuses)

    def got(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            queued = self._answers.get(path, [])
            status = queued.pop(0) if len(queued) > 1 else (queued[0] if queued else 204)
            self.requests.append(Received(path, headers, body, status))
            return status

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


# -- the database and the sender ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One SQLite file with the schema for this module's tests; each test has retailers of its own."""
    made = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('deliveries') / 'cloud.db'}")
    create_schema(made)
    yield made
    made.dispose()


@pytest.fixture(scope="module")
def shared_postgres() -> Iterator[Engine]:
    """One PostgreSQL database with the schema for this module's tests."""
    with postgres_database() as url:
        made = create_db_engine(url)
        create_schema(made)
        try:
            yield made
        finally:
            made.dispose()


def settle(engine: Engine) -> None:
    """Fail whatever a test left pending, so no later test's sender sends it."""
    with engine.begin() as connection:
        connection.execute(
            update(WEBHOOK_DELIVERIES)
            .where(WEBHOOK_DELIVERIES.c.status == "pending")
            .values(status="failed", next_attempt_at=None)
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A database with the schema: SQLite, then PostgreSQL."""
    made: Engine = request.getfixturevalue(f"shared_{request.param}")
    yield made
    settle(made)


@pytest.fixture
def postgres_engine(shared_postgres: Engine) -> Iterator[Engine]:
    """PostgreSQL, for what only it does (row locks)."""
    yield shared_postgres
    settle(shared_postgres)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


SenderFactory = Callable[..., WebhookSender]


@pytest.fixture
def senders(clock: ManualClock) -> Iterator[SenderFactory]:
    """Make senders (loopback allowed unless told otherwise, seeded jitter); all closed at the end."""
    made: list[WebhookSender] = []

    def make(
        engine: Engine, *, allow_private: bool = True, client: httpx.Client | None = None
    ) -> WebhookSender:
        sender = WebhookSender(
            engine, clock, allow_private=allow_private, client=client, rng=random.Random(len(made))
        )
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def add_retailer(engine: Engine) -> str:
    retailer_id = f"shop-{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(insert(RETAILERS).values(id=retailer_id, name=retailer_id, created_at=NOW))
    return retailer_id


def add_endpoint(
    engine: Engine,
    retailer_id: str,
    url: str,
    *,
    secret: str | None = None,
    previous_secret: str | None = None,
    previous_until: datetime | None = None,
) -> tuple[str, str]:
    """Register an endpoint straight in the database (no egress check); return its id and secret."""
    endpoint_id, secret = str(uuid.uuid4()), secret or new_secret()
    with engine.begin() as connection:
        connection.execute(
            insert(WEBHOOK_ENDPOINTS).values(
                id=endpoint_id,
                retailer_id=retailer_id,
                url=url,
                secret=secret,
                previous_secret=previous_secret,
                previous_until=previous_until,
                created_at=NOW,
            )
        )
    return endpoint_id, secret


def enqueue(
    engine: Engine, clock: ManualClock, retailer_id: str, event_type: str = "order.created", count: int = 1
) -> int:
    with engine.begin() as connection:
        return sum(
            deliveries.enqueue(
                connection,
                retailer_id,
                event_type,
                {**DATA, "n": n},
                clock.now(),
                household_id="hh-test",
                order_id="ord-1",
            )
            for n in range(count)
        )


def rows(engine: Engine, endpoint_id: str) -> list[Any]:
    table = WEBHOOK_DELIVERIES.c
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(WEBHOOK_DELIVERIES).where(table.endpoint_id == endpoint_id).order_by(table.id)
            ).all()
        )


def only(engine: Engine, endpoint_id: str) -> Any:
    (row,) = rows(engine, endpoint_id)
    return row


def endpoint(engine: Engine, endpoint_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(WEBHOOK_ENDPOINTS).where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
        ).one()


def wait_of(row: Any, since: datetime) -> float:
    """Seconds from ``since`` to the delivery's next attempt."""
    assert row.next_attempt_at is not None
    return (as_utc(row.next_attempt_at) - since).total_seconds()


def jittered(failures: int) -> tuple[float, float]:
    """The bounds of the wait after ``failures`` failed attempts."""
    base = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
    return base * (1 - JITTER), base * (1 + JITTER)


def advance_to_next_attempt(clock: ManualClock, row: Any) -> None:
    clock.advance(as_utc(row.next_attempt_at) - clock.now())


# -- 1. what a delivery carries -------------------------------------------------------------------


def test_a_delivery_verifies_with_the_endpoints_secret_and_keeps_its_id_across_retries(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, secret = add_endpoint(engine, retailer, receiver.url())
    receiver.answer("/hook", 500, 503, 204)
    assert enqueue(engine, clock, retailer) == 1
    sender = senders(engine)

    assert sender.send_due() == 1
    advance_to_next_attempt(clock, only(engine, endpoint_id))
    assert sender.send_due() == 1
    advance_to_next_attempt(clock, only(engine, endpoint_id))
    assert sender.send_due() == 1

    got = receiver.got("/hook")
    assert [r.status for r in got] == [500, 503, 204]
    row = only(engine, endpoint_id)
    assert {r.message_id for r in got} == {row.id}  # one message, one id, however often it is sent
    assert row.id.startswith("msg_")
    assert len({r.body for r in got}) == 1
    assert [r.timestamp for r in got] == sorted({r.timestamp for r in got})  # each attempt's own time
    assert got[-1].timestamp == int(clock.now().timestamp())
    for request in got:
        request.verify(secret)
        assert request.headers["content-type"] == "application/json"
        assert len(request.headers["webhook-signature"].split()) == 1
        with pytest.raises(WebhookVerificationError):
            request.verify(new_secret())
    with pytest.raises(WebhookVerificationError):
        verify([secret], got[0].headers, got[0].body + b" ", got[0].timestamp)
    body = json.loads(got[0].body)
    assert body == {"type": "order.created", "timestamp": NOW.isoformat(), "data": {**DATA, "n": 0}}

    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 3, 204, None)
    assert row.next_attempt_at is None
    assert as_utc(row.delivered_at) == clock.now()
    assert sender.send_due() == 0


# -- 2. retries: backoff, jitter, giving up --------------------------------------------------------


def test_the_backoff_grows_within_its_jitter() -> None:
    rng = random.Random(1)
    for failures in range(1, len(BACKOFF_S) + 4):
        low, high = jittered(failures)
        for _ in range(50):
            assert low <= backoff(failures, rng).total_seconds() <= high
    assert list(BACKOFF_S) == sorted(BACKOFF_S)
    assert all(jittered(n)[1] <= jittered(n + 1)[0] for n in range(1, len(BACKOFF_S)))  # no overlap


def test_a_500_is_retried_with_growing_waits_and_given_up_after_a_day(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, receiver.url())
    receiver.answer("/hook", 500)
    enqueue(engine, clock, retailer)
    sender = senders(engine)

    assert sender.send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("pending", 1, 500, "HTTP 500")
    first_wait = wait_of(row, NOW)
    assert 5 * (1 - JITTER) <= first_wait <= 5 * (1 + JITTER)

    # Not before it is due...
    clock.advance(timedelta(seconds=first_wait - 0.5))
    assert sender.send_due() == 0
    assert len(receiver.got()) == 1
    # ...and again once it is.
    advance_to_next_attempt(clock, row)
    assert sender.send_due() == 1
    assert len(receiver.got()) == 2

    waits = [first_wait]
    row = only(engine, endpoint_id)
    while row.status == "pending":
        waits.append(wait_of(row, clock.now()))
        low, high = jittered(row.attempts)
        assert low <= waits[-1] <= high, (row.attempts, waits[-1])
        advance_to_next_attempt(clock, row)
        assert sender.send_due() == 1
        row = only(engine, endpoint_id)
        assert row.attempts == len(waits) + 1
        assert len(waits) < 30, "never gave up"

    # The waits grew through the whole schedule, then stayed at the last step.
    growing = waits[: len(BACKOFF_S)]
    assert growing == sorted(growing)
    assert len(waits) >= len(BACKOFF_S)
    assert all(jittered(len(BACKOFF_S))[0] <= w for w in waits[len(BACKOFF_S) - 1 :])
    assert row.status == "failed"
    assert row.attempts == len(receiver.got()) == len(waits) + 1
    assert row.last_status_code == 500
    assert row.last_error == f"gave up after {row.attempts} attempts: HTTP 500"
    assert row.next_attempt_at is None
    assert row.delivered_at is None
    assert clock.now() - NOW <= timedelta(hours=24)  # every attempt was within the day
    assert clock.now() - NOW > timedelta(hours=24) - timedelta(seconds=jittered(len(BACKOFF_S))[1])
    clock.advance(timedelta(days=2))
    assert sender.send_due() == 0
    assert len(receiver.got()) == row.attempts


# -- 3. 410 Gone ---------------------------------------------------------------------------------


def test_410_disables_the_endpoint_fails_its_deliveries_and_retry_now_sends_them_again(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    gone, _ = add_endpoint(engine, retailer, receiver.url("/gone"))
    other, _ = add_endpoint(engine, retailer, receiver.url("/other"))
    receiver.answer("/gone", 410)
    assert enqueue(engine, clock, retailer, count=3) == 6
    sender = senders(engine)

    sender.send_due()
    assert len(receiver.got("/gone")) == 1  # nothing more went to it once it said 410
    assert len(receiver.got("/other")) == 3  # the retailer's other endpoint is not affected
    disabled = endpoint(engine, gone)
    assert as_utc(disabled.disabled_at) == NOW
    assert "410" in disabled.disabled_reason
    assert endpoint(engine, other).disabled_at is None
    failed = rows(engine, gone)
    assert {row.status for row in failed} == {"failed"}
    assert all(row.next_attempt_at is None for row in failed)
    answered = [row for row in failed if row.last_status_code == 410]
    assert len(answered) == 1
    assert answered[0].attempts == 1
    assert answered[0].id == receiver.got("/gone")[0].message_id
    assert all("410" in row.last_error for row in failed)
    assert {row.status for row in rows(engine, other)} == {"delivered"}

    clock.advance(timedelta(hours=1))
    assert sender.send_due() == 0
    assert enqueue(engine, clock, retailer) == 1  # a new message goes to the live endpoint only
    sender.send_due()
    assert len(receiver.got("/gone")) == 1
    assert len(receiver.got("/other")) == 4

    # The retailer fixes its server and enables the endpoint: what failed is due again.
    receiver.answer("/gone", 204)
    with engine.begin() as connection:
        connection.execute(
            update(WEBHOOK_ENDPOINTS)
            .where(WEBHOOK_ENDPOINTS.c.id == gone)
            .values(disabled_at=None, disabled_reason=None)
        )
        assert deliveries.retry_now(connection, gone, clock.now()) == 3
    assert {row.status for row in rows(engine, gone)} == {"pending"}
    assert sender.send_due() == 3
    assert {row.status for row in rows(engine, gone)} == {"delivered"}
    assert {r.message_id for r in receiver.got("/gone")} == {row.id for row in failed}


def test_a_delivery_due_to_a_disabled_endpoint_fails_without_being_sent(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, receiver.url())
    enqueue(engine, clock, retailer)
    with engine.begin() as connection:  # the retailer disabled it after the message was queued
        connection.execute(
            update(WEBHOOK_ENDPOINTS).where(WEBHOOK_ENDPOINTS.c.id == endpoint_id).values(disabled_at=NOW)
        )
    assert senders(engine).send_due() == 1
    assert receiver.got() == []
    row = only(engine, endpoint_id)
    assert (row.status, row.last_error) == ("failed", "the endpoint is disabled")


# -- 4. no answer at all ------------------------------------------------------------------------------


def test_a_refused_connection_is_a_failure_and_is_retried(
    engine: Engine, clock: ManualClock, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    port = free_port()  # nothing listens here yet
    endpoint_id, secret = add_endpoint(engine, retailer, f"http://127.0.0.1:{port}/hook")
    enqueue(engine, clock, retailer)
    sender = senders(engine)

    assert sender.send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error.startswith("ConnectError")
    assert 5 * (1 - JITTER) <= wait_of(row, NOW) <= 5 * (1 + JITTER)

    late = Receiver(port)  # the retailer's server comes up
    try:
        advance_to_next_attempt(clock, row)
        assert sender.send_due() == 1
        (request,) = late.got()
        request.verify(secret)
        assert request.message_id == row.id
    finally:
        late.close()
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 204)


# -- 5. secret rotation ---------------------------------------------------------------------------


def test_during_a_rotation_either_secret_verifies_and_afterwards_only_the_new_one(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    old, new = new_secret(), new_secret()
    add_endpoint(
        engine,
        retailer,
        receiver.url(),
        secret=new,
        previous_secret=old,
        previous_until=NOW + timedelta(hours=1),
    )
    sender = senders(engine)

    enqueue(engine, clock, retailer)
    sender.send_due()
    (during,) = receiver.got()
    assert len(during.headers["webhook-signature"].split()) == 2
    during.verify(old)  # a receiver not yet switched
    during.verify(new)  # a receiver already switched
    with pytest.raises(WebhookVerificationError):
        during.verify(new_secret())

    clock.advance(timedelta(hours=1, seconds=1))
    enqueue(engine, clock, retailer)
    sender.send_due()
    after = receiver.got()[1]
    assert len(after.headers["webhook-signature"].split()) == 1
    after.verify(new)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        after.verify(old)


# -- 6. egress -------------------------------------------------------------------------------------


def test_a_private_address_is_refused_recorded_and_retried_but_never_called(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, receiver.url())
    enqueue(engine, clock, retailer)
    strict = senders(engine, allow_private=False)

    assert strict.send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert "private, loopback or reserved" in row.last_error
    advance_to_next_attempt(clock, row)
    assert strict.send_due() == 1
    assert only(engine, endpoint_id).attempts == 2
    assert receiver.got() == []  # refused before any connection was made

    # A worker allowed to call private addresses (a trusted LAN) delivers the same message.
    advance_to_next_attempt(clock, only(engine, endpoint_id))
    assert senders(engine).send_due() == 1
    assert [r.message_id for r in receiver.got()] == [row.id]


def test_a_name_that_turns_private_after_the_check_reaches_nothing(
    engine: Engine,
    clock: ManualClock,
    receiver: Receiver,
    senders: SenderFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # DNS rebinding: the name resolves to a public address for the check, then to loopback. The
    # resolver is the one thing faked here; the sender, its HTTP client and the receiver are real.
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return real("93.184.216.34" if len(lookups) == 1 else "127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    retailer = add_retailer(engine)
    # https on 443, as a public endpoint must be: nothing listens there on loopback, so the message
    # says where it was refused.
    endpoint_id, _ = add_endpoint(engine, retailer, "https://rebind.test/hook")
    enqueue(engine, clock, retailer)
    assert senders(engine, allow_private=False).send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "resolves to 127.0.0.1, a private, loopback or reserved address" in row.last_error
    # Checked before the delivery, looked up again at the connection and refused there.
    assert len(lookups) == 2
    assert receiver.got() == []


def test_the_egress_client_connects_to_a_checked_address_and_keeps_the_host_name() -> None:
    # Loopback allowed: a request by name reaches the receiver with the name in its Host header.
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with egress.client(allow_private=True, timeout=5) as allowed:
            assert allowed.get(f"http://localhost:{port}/").status_code == 204
        with egress.client(allow_private=False, timeout=5) as strict, pytest.raises(EgressRefused):
            strict.get(f"http://localhost:{port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [f"localhost:{port}"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://10.0.0.5/hook",
        "https://10.255.255.1:8443/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
    ],
)
def test_check_url_refuses_private_loopback_and_reserved_addresses(url: str) -> None:
    with pytest.raises(EgressRefused, match="private, loopback or reserved"):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "javascript:alert(1)",
        "http:///hook",
        "93.184.216.34/hook",
        "http://93.184.216.34:99999/hook",
    ],
)
def test_check_url_refuses_what_is_not_an_http_url_even_when_private_is_allowed(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(EgressRefused):
            check_url(url, allow_private=allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/hook",
        "https://93.184.216.34:443/hook?x=1",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "https://[64:ff9b::5db8:d822]/hook",  # NAT64 of 93.184.216.34
        "https://[2002:5db8:d822::1]/hook",  # 6to4 of 93.184.216.34
        "https://[::ffff:93.184.216.34]/hook",  # IPv4-mapped
    ],
)
def test_check_url_accepts_https_to_a_public_address(url: str) -> None:
    check_url(url, allow_private=False)  # IP literals: no DNS lookup


def test_check_url_accepts_loopback_on_any_port_and_private_https_when_private_is_allowed() -> None:
    check_url("http://127.0.0.1:9/hook", allow_private=True)
    check_url("http://localhost:8080/hook", allow_private=True)
    check_url("https://[::1]:8443/hook", allow_private=True)
    check_url("https://10.0.0.5/hook", allow_private=True)


@pytest.mark.parametrize(
    ("url", "carried"),
    [
        ("https://[64:ff9b::7f00:1]/hook", "127.0.0.1 (NAT64)"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", "169.254.169.254 (NAT64)"),
        ("https://[64:ff9b:1::7f00:1]/hook", "127.0.0.1 (NAT64 /96)"),
        # Local-use: public read as a /96, but which layout the network uses is unknown, and as a /64
        # it is not public.
        ("https://[64:ff9b:1::5db8:d822]/hook", "0.0.0.93 (NAT64 /64)"),
        ("https://[2002:7f00:1::1]/hook", "127.0.0.1 (6to4)"),
        ("https://[2002:a9fe:a9fe::1]/hook", "169.254.169.254 (6to4)"),
        ("https://[::ffff:10.0.0.5]/hook", "10.0.0.5 (IPv4-mapped)"),
        ("https://[::10.0.0.5]/hook", "10.0.0.5 (IPv4-compatible)"),
        ("https://[::ffff:0:7f00:1]/hook", "127.0.0.1 (IPv4-translated)"),
        ("https://[2001:0:5db8:d822::80ff:fffe]/hook", "127.0.0.1 (Teredo)"),  # the client, inverted
        ("https://[2001:0:a00:5::f7f7:f7f7]/hook", "10.0.0.5 (Teredo server)"),
    ],
)
def test_check_url_refuses_an_ipv6_address_that_carries_a_private_ipv4_one(url: str, carried: str) -> None:
    with pytest.raises(EgressRefused, match="private, loopback or reserved") as refused:
        check_url(url, allow_private=False)
    assert f"which carries {carried}" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34:8443/hook",
        "https://93.184.216.34:80/hook",
        "https://93.184.216.34:22/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]:25/hook",
    ],
)
def test_check_url_refuses_any_port_but_443(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(EgressRefused, match=r"port \d+: webhooks go to port 443 only"):
            check_url(url, allow_private=allow_private)
    with pytest.raises(EgressRefused, match="port 8443"):
        check_url("https://10.0.0.5:8443/hook", allow_private=True)  # a LAN address is not this machine


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",
        "http://93.184.216.34:443/hook",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_check_url_refuses_plain_http_to_anything_but_loopback(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(EgressRefused, match="https:// only"):
            check_url(url, allow_private=allow_private)
    with pytest.raises(EgressRefused, match="https:// only"):
        check_url("http://10.0.0.5/hook", allow_private=True)  # a trusted LAN still gets no clear text


def test_the_egress_client_refuses_a_port_or_plain_http_at_the_connection() -> None:
    # Checked where the connection is opened, not only by check_url: nothing is ever sent there.
    with egress.client(allow_private=False, timeout=5) as strict:
        with pytest.raises(EgressRefused, match="port 8443"):
            strict.get("https://93.184.216.34:8443/")
        with pytest.raises(EgressRefused, match="https:// only"):
            strict.get("http://93.184.216.34/")
    with (
        egress.client(allow_private=True, timeout=5) as trusting,
        pytest.raises(EgressRefused, match="https"),
    ):
        trusting.get("http://10.0.0.5/")


def test_a_plain_http_endpoint_on_another_host_is_refused_at_delivery(
    engine: Engine, clock: ManualClock, senders: SenderFactory
) -> None:
    # Registered before http:// was refused (or straight in the database): not sent, even by a worker
    # that may call private addresses.
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, "http://93.184.216.34/hook")
    enqueue(engine, clock, retailer)
    assert senders(engine, allow_private=True).send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert "https:// only" in row.last_error


def test_a_name_that_leaves_loopback_after_the_check_gets_no_plain_http(
    engine: Engine,
    clock: ManualClock,
    receiver: Receiver,
    senders: SenderFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Loopback for the check (http:// allowed there), a public address at the connection: refused
    # there, so a clear-text webhook never leaves the machine.
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hop.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return real("127.0.0.1" if len(lookups) == 1 else "93.184.216.34", port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, receiver.url().replace("127.0.0.1", "hop.test"))
    enqueue(engine, clock, retailer)
    assert senders(engine, allow_private=True).send_due() == 1
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "https:// only" in row.last_error
    assert len(lookups) == 2
    assert receiver.got() == []


# -- 7. one deadline per attempt, and a bounded answer -------------------------------------------------


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    """Shrink the attempt's deadline to 2 s, so a test of it takes seconds, not 15."""
    monkeypatch.setattr(deliveries, "DEADLINE_S", 2.0)
    return 2.0


@pytest.fixture
def slow() -> Iterator[SlowReceiver]:
    """A receiver that answers one byte every half second: any per-read timeout would let it go on."""
    server = SlowReceiver(every_s=0.5)
    try:
        yield server
    finally:
        server.close()


def timed_send(sender: WebhookSender) -> tuple[int, float]:
    started = time.monotonic()
    sent = sender.send_due()
    return sent, time.monotonic() - started


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline_and_retried(
    engine: Engine, clock: ManualClock, senders: SenderFactory, slow: SlowReceiver, short_deadline: float
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, _ = add_endpoint(engine, retailer, slow.url())
    enqueue(engine, clock, retailer)

    sent, took = timed_send(senders(engine))
    assert sent == 1
    assert short_deadline <= took < short_deadline + 1.5
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error == "no answer within the 2 s deadline"
    assert 5 * (1 - JITTER) <= wait_of(row, NOW) <= 5 * (1 + JITTER)  # the usual backoff
    (visit,) = slow.got()
    assert 3 <= visit.sent <= 6 < len(NO_CONTENT)  # the answer was not over when it was cut off


def test_a_2xx_whose_body_drips_is_delivered_and_the_connection_dropped_at_the_deadline(
    engine: Engine, clock: ManualClock, senders: SenderFactory, short_deadline: float
) -> None:
    slow = SlowReceiver(
        every_s=0.5, head=b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n", answer=b"x" * 1000
    )
    try:
        retailer = add_retailer(engine)
        endpoint_id, _ = add_endpoint(engine, retailer, slow.url())
        enqueue(engine, clock, retailer)
        sent, took = timed_send(senders(engine))
    finally:
        slow.close()
    assert sent == 1
    assert short_deadline <= took < short_deadline + 1.5
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)  # its status said so


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (500, "pending")])
def test_an_endless_answer_is_read_up_to_64_kib_in_bounded_memory(
    engine: Engine, clock: ManualClock, senders: SenderFactory, status: int, outcome: str
) -> None:
    endless = SlowReceiver(endless_status=status, limit=64 * 1024 * 1024)
    try:
        retailer = add_retailer(engine)
        endpoint_id, _ = add_endpoint(engine, retailer, endless.url())
        enqueue(engine, clock, retailer)
        sender = senders(engine)
        sender.send_due()  # the first, unmeasured: it warms the caches of SQL and of the client
        enqueue(engine, clock, retailer)
        tracemalloc.start()
        try:
            sent, took = timed_send(sender)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        endless.close()
    assert sent == 1
    assert took < 5
    assert peak < 2 * 1024 * 1024, f"{peak / 1024:.0f} KiB"  # 64 MiB were on offer
    assert {row.status for row in rows(engine, endpoint_id)} == {outcome}
    assert all(row.last_status_code == status for row in rows(engine, endpoint_id))


# -- 8. two workers, one database -------------------------------------------------------------------


@pytest.mark.postgres
def test_two_senders_at_once_deliver_each_message_exactly_once(
    postgres_engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(postgres_engine)
    endpoint_id, secret = add_endpoint(postgres_engine, retailer, receiver.url())
    total = 2 * deliveries.BATCH + 20  # more than one batch each, so both have work
    assert enqueue(postgres_engine, clock, retailer, count=total) == total
    workers = [senders(postgres_engine), senders(postgres_engine)]
    start = threading.Barrier(len(workers))
    attempted = [0] * len(workers)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait(5)
            while sent := workers[index].send_due():
                attempted[index] += sent
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    ids = {row.id for row in rows(postgres_engine, endpoint_id)}
    counted = Counter(r.message_id for r in receiver.got())
    assert set(counted) == ids
    assert set(counted.values()) == {1}, "a message was sent twice"
    assert sum(attempted) == total
    assert all(attempted), attempted  # both workers took a share
    assert {(row.status, row.attempts) for row in rows(postgres_engine, endpoint_id)} == {("delivered", 1)}
    for request in receiver.got()[:3]:
        request.verify(secret)


@pytest.mark.postgres
def test_a_delivery_locked_by_another_worker_is_skipped_not_waited_for(
    postgres_engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(postgres_engine)
    endpoint_id, _ = add_endpoint(postgres_engine, retailer, receiver.url())
    enqueue(postgres_engine, clock, retailer, count=2)
    locked, free = (row.id for row in rows(postgres_engine, endpoint_id))
    sender = senders(postgres_engine)
    result: list[int] = []

    with postgres_engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT id FROM webhook_deliveries WHERE id = :id FOR UPDATE"), {"id": locked})
        thread = threading.Thread(target=lambda: result.append(sender.send_due()))
        thread.start()
        thread.join(10)
        blocked = thread.is_alive()
    thread.join(10)
    assert not blocked, "send_due waited for a row another worker holds"
    assert result == [1]
    assert [r.message_id for r in receiver.got()] == [free]
    assert sender.send_due() == 1  # released: now it goes
    assert [r.message_id for r in receiver.got()] == [free, locked]


class Crash(Exception):
    """The worker dies in the middle of an attempt."""


def test_a_claimed_delivery_is_leased_and_taken_over_when_the_lease_runs_out(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    retailer = add_retailer(engine)
    endpoint_id, secret = add_endpoint(engine, retailer, receiver.url())
    enqueue(engine, clock, retailer)

    def die(request: httpx.Request) -> httpx.Response:
        raise Crash

    dying = senders(engine, client=httpx.Client(transport=httpx.MockTransport(die)))
    with pytest.raises(Crash):
        dying.send_due()
    row = only(engine, endpoint_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert as_utc(row.next_attempt_at) == NOW + LEASE  # kept from other workers meanwhile

    survivor = senders(engine)
    assert survivor.send_due() == 0
    clock.advance(LEASE - timedelta(seconds=1))
    assert survivor.send_due() == 0
    clock.advance(timedelta(seconds=1))
    assert survivor.send_due() == 1
    (request,) = receiver.got()
    request.verify(secret)
    assert only(engine, endpoint_id).status == "delivered"


def test_a_delivery_on_the_wire_is_never_claimed_again_whatever_the_clock_says(
    engine: Engine, clock: ManualClock, receiver: Receiver, senders: SenderFactory
) -> None:
    # A simulation moves the injected clock by days while a delivery is on the wire: its lease runs
    # out on that clock, and a lane claiming for its free threads would send the message twice.
    retailer = add_retailer(engine)
    add_endpoint(engine, retailer, receiver.url())
    enqueue(engine, clock, retailer)
    sender = senders(engine)
    (delivery,) = sender.claim(1)
    clock.advance(LEASE * 3)

    assert sender.claim(1, sending={delivery.id}) == []
    assert [again.id for again in sender.claim(1)] == [delivery.id], "without it, claimed twice"


# -- 9. the webhook lane: threads of their own, a few per retailer -------------------------------------


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not true within {timeout} s: {check}"
        time.sleep(0.01)
    return result


@pytest.fixture
def lanes(clock: ManualClock) -> Iterator[Callable[[Engine], WebhookLane]]:
    """Start webhook lanes (loopback allowed, a short tick); all stopped at the end."""
    made: list[WebhookLane] = []

    def make(engine: Engine) -> WebhookLane:
        lane = WebhookLane(engine, clock, allow_private=True, tick_s=0.05)
        made.append(lane)
        lane.start()
        return lane

    yield make
    for lane in made:
        lane.stop()


def test_one_retailers_dripping_endpoint_holds_two_threads_and_delays_no_one_else(
    engine: Engine,
    clock: ManualClock,
    receiver: Receiver,
    slow: SlowReceiver,
    lanes: Callable[[Engine], WebhookLane],
    short_deadline: float,
) -> None:
    slow_shop, fast_shop = add_retailer(engine), add_retailer(engine)
    slow_endpoint, _ = add_endpoint(engine, slow_shop, slow.url())
    fast_endpoint, secret = add_endpoint(engine, fast_shop, receiver.url("/fast"))
    enqueue(engine, clock, slow_shop, count=5)
    lanes(engine)

    eventually(lambda: len(slow.got()) >= PER_RETAILER)
    started = time.monotonic()
    enqueue(engine, clock, fast_shop, count=3)
    eventually(lambda: len(receiver.got("/fast")) == 3, timeout=short_deadline)
    assert time.monotonic() - started < 1.0
    assert time.monotonic() - slow.got()[0].accepted < short_deadline  # the slow shop's still drip
    for request in receiver.got("/fast"):
        request.verify(secret)

    # The slow shop's five go two at a time, each cut off at its deadline.
    eventually(lambda: {row.attempts for row in rows(engine, slow_endpoint)} == {1}, timeout=20)
    accepted = sorted(visit.accepted for visit in slow.got())
    assert len(accepted) == 5
    for at in accepted:
        overlapping = [other for other in accepted if at - short_deadline + 0.2 < other <= at]
        assert len(overlapping) <= PER_RETAILER, accepted
    assert {row.last_error for row in rows(engine, slow_endpoint)} == {"no answer within the 2 s deadline"}
    assert {row.status for row in rows(engine, fast_endpoint)} == {"delivered"}


@pytest.mark.postgres
def test_two_workers_lanes_send_each_message_exactly_once(
    postgres_engine: Engine,
    clock: ManualClock,
    receiver: Receiver,
    lanes: Callable[[Engine], WebhookLane],
) -> None:
    endpoints = []
    for path in ("/a", "/b", "/c"):
        retailer = add_retailer(postgres_engine)
        endpoints.append(add_endpoint(postgres_engine, retailer, receiver.url(path))[0])
        enqueue(postgres_engine, clock, retailer, count=40)
    lanes(postgres_engine)
    lanes(postgres_engine)

    ids = {row.id for endpoint_id in endpoints for row in rows(postgres_engine, endpoint_id)}
    eventually(lambda: len(receiver.got()) >= len(ids), timeout=30)
    time.sleep(0.5)  # a second send of any of them would come within this
    counted = Counter(r.message_id for r in receiver.got())
    assert set(counted) == ids
    assert set(counted.values()) == {1}, "a message was sent twice"
    for endpoint_id in endpoints:
        assert {(row.status, row.attempts) for row in rows(postgres_engine, endpoint_id)} == {
            ("delivered", 1)
        }


# -- through the HTTP API of a running cloud ----------------------------------------------------------


@dataclass(frozen=True)
class Cloud:
    service: CloudService
    clock: ManualClock
    client: httpx.Client
    sender: WebhookSender

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def retailer(self, name: str) -> tuple[str, dict[str, str]]:
        """Create a retailer; return its id and the header with its API key."""
        with Session(self.engine) as session:
            made, key = create_retailer(session, f"{name} {uuid.uuid4().hex[:6]}", NOW)
            session.commit()
            return made.id, {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """A running cloud that refuses private webhook URLs, whose deliveries the tests send themselves."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('webhooks') / 'cloud.db'}"
        else:
            url = stack.enter_context(postgres_database())
        settings = CloudSettings(
            database_url=url,
            mqtt=MqttSettings(host="127.0.0.1", port=free_port()),  # no broker needed for the API
            http_port=0,
            client_id=f"webhooks-test-{uuid.uuid4().hex[:8]}",
            planning=False,
            writer_process=False,  # nothing is ingested here
            webhook_allow_private=False,
        )
        clock = ManualClock(NOW)
        service = CloudService(settings, clock)
        service.start()
        stack.callback(service.stop)
        # The worker's own lane would refuse the loopback receiver; the tests send instead.
        service.webhooks.stop()
        client = stack.enter_context(httpx.Client(base_url=service.url, timeout=10))
        sender = WebhookSender(service.engine, clock, allow_private=True, rng=random.Random(3))
        stack.callback(sender.close)
        yield Cloud(service, clock, client, sender)


@pytest.fixture
def api(cloud: Cloud) -> Iterator[Cloud]:
    """The running cloud; what a test leaves pending is failed afterwards, so no later test sends it."""
    yield cloud
    settle(cloud.engine)


def test_the_api_refuses_a_webhook_url_the_cloud_may_not_call(api: Cloud) -> None:
    _, key = api.retailer("Careful Grocer")
    for url in (
        "http://127.0.0.1:9/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
    ):
        answer = api.client.post("/retailer/webhooks", headers=key, json={"url": url})
        assert answer.status_code == 422, (url, answer.text)
        assert "private, loopback or reserved" in answer.json()["detail"]
    answer = api.client.post("/retailer/webhooks", headers=key, json={"url": "ftp://93.184.216.34/hook"})
    assert answer.status_code == 422
    for url, reason in (
        ("http://93.184.216.34/hook", "https:// only"),
        ("https://93.184.216.34:8443/hook", "port 8443: webhooks go to port 443 only"),
        ("https://[64:ff9b::7f00:1]/hook", "which carries 127.0.0.1 (NAT64)"),
        ("https://[2002:a9fe:a9fe::1]/hook", "which carries 169.254.169.254 (6to4)"),
    ):
        answer = api.client.post("/retailer/webhooks", headers=key, json={"url": url})
        assert answer.status_code == 422, (url, answer.text)
        assert reason in answer.json()["detail"]
    assert api.client.get("/retailer/webhooks", headers=key).json() == []

    public = api.client.post("/retailer/webhooks", headers=key, json={"url": "https://93.184.216.34/hook"})
    assert public.status_code == 201, public.text
    assert public.json()["secret"].startswith("whsec_")
    assert "secret" not in api.client.get("/retailer/webhooks", headers=key).json()[0]
    # Nothing is ever queued for this retailer, so nothing goes to that address; disable it anyway.
    assert api.client.delete(f"/retailer/webhooks/{public.json()['id']}", headers=key).status_code == 200


def test_the_delivery_log_shows_attempts_and_outcomes_to_its_own_retailer_only(
    api: Cloud, receiver: Receiver
) -> None:
    retailer, key = api.retailer("Log Market")
    _, stranger = api.retailer("Other Market")
    endpoint_id, _ = add_endpoint(api.engine, retailer, receiver.url("/log"))
    receiver.answer("/log", 500, 500, 204)
    enqueue(api.engine, api.clock, retailer, "order.created", count=2)
    assert api.sender.send_due() == 2
    api.clock.advance(timedelta(seconds=10))
    assert api.sender.send_due() == 2
    api.clock.advance(timedelta(seconds=10))
    receiver.answer("/log", 503)
    enqueue(api.engine, api.clock, retailer, "order.cancelled")
    assert api.sender.send_due() == 1

    answer = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key)
    assert answer.status_code == 200, answer.text
    log = answer.json()
    assert [entry["event_type"] for entry in log] == ["order.cancelled", "order.created", "order.created"]
    newest, *older = log
    assert (newest["status"], newest["attempts"], newest["last_status_code"]) == ("pending", 1, 503)
    assert newest["last_error"] == "HTTP 503"
    assert newest["next_attempt_at"] is not None
    assert newest["delivered_at"] is None
    for entry in older:
        assert (entry["status"], entry["attempts"], entry["last_status_code"]) == ("delivered", 2, 204)
        assert entry["delivered_at"] is not None
        assert entry["next_attempt_at"] is None
        assert json.loads(entry["payload"])["type"] == "order.created"
    assert {entry["id"] for entry in log} == {r.message_id for r in receiver.got("/log")}

    delivered = api.client.get(
        f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key, params={"status": "delivered"}
    )
    assert [entry["status"] for entry in delivered.json()] == ["delivered", "delivered"]
    one = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key, params={"limit": 1})
    assert [entry["id"] for entry in one.json()] == [newest["id"]]

    theirs = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=stranger)
    assert theirs.status_code == 404
    assert api.client.get("/retailer/webhooks", headers=stranger).json() == []
    assert api.client.get(f"/retailer/webhooks/{uuid.uuid4()}/deliveries", headers=key).status_code == 404
    assert api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries").status_code == 401


def test_after_a_410_enable_through_the_api_sends_what_failed(api: Cloud, receiver: Receiver) -> None:
    retailer, key = api.retailer("Gone Grocer")
    _, stranger = api.retailer("Nosy Grocer")
    endpoint_id, secret = add_endpoint(api.engine, retailer, receiver.url("/gone"))
    receiver.answer("/gone", 410)
    enqueue(api.engine, api.clock, retailer, count=2)
    api.sender.send_due()
    assert len(receiver.got("/gone")) == 1

    (listed,) = api.client.get("/retailer/webhooks", headers=key).json()
    assert listed["disabled_at"] is not None
    assert "410" in listed["disabled_reason"]
    log = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key).json()
    assert sorted((e["status"], e["last_status_code"] or 0) for e in log) == [("failed", 0), ("failed", 410)]

    assert api.client.post(f"/retailer/webhooks/{endpoint_id}/enable", headers=stranger).status_code == 404
    receiver.answer("/gone", 204)
    enabled = api.client.post(f"/retailer/webhooks/{endpoint_id}/enable", headers=key)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["disabled_at"] is None
    assert enabled.json()["disabled_reason"] is None
    log = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key).json()
    assert {e["status"] for e in log} == {"pending"}
    assert api.sender.send_due() == 2
    for request in receiver.got("/gone")[1:]:
        request.verify(secret)
    log = api.client.get(f"/retailer/webhooks/{endpoint_id}/deliveries", headers=key).json()
    assert {e["status"] for e in log} == {"delivered"}


def test_a_secret_rotated_through_the_api_signs_with_both_for_a_day(api: Cloud, receiver: Receiver) -> None:
    retailer, key = api.retailer("Rotating Grocer")
    endpoint_id, old = add_endpoint(api.engine, retailer, receiver.url("/rotate"))
    rotated = api.client.post(f"/retailer/webhooks/{endpoint_id}/rotate", headers=key)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    until = datetime.fromisoformat(rotated.json()["previous_secret_valid_until"])
    assert until == api.clock.now() + timedelta(hours=24)

    enqueue(api.engine, api.clock, retailer)
    api.sender.send_due()
    (during,) = receiver.got("/rotate")
    during.verify(old)
    during.verify(new)

    api.clock.advance(timedelta(hours=24, seconds=1))
    (listed,) = api.client.get("/retailer/webhooks", headers=key).json()
    assert listed["previous_secret_valid_until"] is None
    enqueue(api.engine, api.clock, retailer)
    api.sender.send_due()
    after = receiver.got("/rotate")[1]
    after.verify(new)
    with pytest.raises(WebhookVerificationError):
        after.verify(old)
