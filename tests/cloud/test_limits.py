"""What one request and one caller may cost the API (cloud/api/limits.py), over real HTTP.

A running worker on SQLite: a body declared too large is answered 413 before a byte of it is sent,
one sent in chunks is cut at the limit, the catalog route takes a 10,000-item catalog from its
retailer only; a household's token past its rate gets 429 with Retry-After while another's does
not, an address without a credential is limited too, and the health probes never are.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from sqlmodel import Session
from starlette.types import Message, Receive, Scope, Send

from cloud.api import limits
from cloud.api.limits import BodyLimitMiddleware
from cloud.api.schemas.retail import (
    MAX_CATALOG_ITEMS,
    CatalogUpload,
    RetailerOrderEvent,
    SlotsUpload,
)
from cloud.db.engine import create_db_engine
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import gtin
from shared.clock import ManualClock
from tests.support.auth import bearer
from tests.support.cloud import cloud_worker
from tests.support.factories import added, msg

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOUSEHOLD_RATE, ADDRESS_RATE = 5, 3
FIFTY_MB = 50 * 10**6


@pytest.fixture
def cloud(tmp_path: Any) -> Iterator[CloudService]:
    """A worker of the test's own, whose rates a few requests exhaust (the counts are per worker)."""

    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1)), msg(added("fridge-b", 1))])

    with cloud_worker(
        f"sqlite:///{tmp_path / 'cloud.db'}",
        ManualClock(NOW),
        "limits",
        prepare=enrol,
        rate_limit_household=f"{HOUSEHOLD_RATE}/minute",
        rate_limit_address=f"{ADDRESS_RATE}/minute",
    ) as service:
        yield service


def raw_request(cloud: CloudService, head: str) -> socket.socket:
    """Open a connection to the worker and send ``head`` (the request line and headers) only."""
    connection = socket.create_connection(("127.0.0.1", cloud.http_port), timeout=10)
    connection.sendall(head.encode())
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Read one response (Content-Length framed); return its status, headers and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += connection.recv(65536)
    return int(status_line.split()[1]), headers, json.loads(body)


# -- bodies -------------------------------------------------------------------------------------


def test_a_50_mb_body_is_refused_before_it_is_sent(cloud: CloudService) -> None:
    head = (
        "POST /households/hh-fridge-a/orders HTTP/1.1\r\nHost: frigo\r\n"
        f"Content-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n"
    )
    with raw_request(cloud, head) as connection:
        # Not a byte of the body is sent: the answer comes from the headers alone.
        status, headers, body = read_response(connection)
    assert status == 413
    assert headers["connection"] == "close"
    assert "1 MiB" in body["detail"]


def test_a_chunked_body_is_cut_at_the_limit(cloud: CloudService) -> None:
    head = (
        "POST /households/hh-fridge-a/orders HTTP/1.1\r\nHost: frigo\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    with raw_request(cloud, head) as connection:
        connection.setblocking(False)
        while sent < FIFTY_MB:
            readable, writable, _ = select.select([connection], [connection], [], 10)
            if readable:
                break
            assert writable, "the worker neither read nor answered for 10 s"
            try:
                sent += connection.send(chunk)
            except BlockingIOError:
                continue
        connection.setblocking(True)
        status, _, body = read_response(connection)
    assert status == 413, body
    # What the worker took is counted in test_the_middleware_reads_no_further_than_its_limit; the
    # client could send this much more into the sockets' buffers before the answer reached it.
    assert sent < 16 * limits.MiB


def test_a_retailer_uploads_a_whole_catalog_and_no_one_else_sends_that_much(cloud: CloudService) -> None:
    with Session(cloud.engine) as session:
        _, key = create_retailer(session, "Shop One", NOW)
        session.commit()
    items = [
        {
            "gtin": gtin.make_gtin13(f"21{n:010d}"),
            "name": f"Organic whole milk 3.8% 1 l, batch {n}",
            "price": 1.25,
            "currency": "EUR",
            "pack_size": 1000,
            "unit": "ml",
            "category": "dairy",
        }
        for n in range(MAX_CATALOG_ITEMS)
    ]
    body = json.dumps({"items": items}).encode()
    assert limits.MAX_BODY < len(body) < limits.CATALOG_BODY
    with httpx.Client(base_url=cloud.url, timeout=60) as client:
        anonymous = client.put(
            "/retailer/catalog", content=body, headers={"Content-Type": "application/json"}
        )
        assert anonymous.status_code == 413
        assert "without a live credential" in anonymous.json()["detail"]
        forged = {"Authorization": "Bearer frk_not-a-key", "Content-Type": "application/json"}
        assert client.put("/retailer/catalog", content=body, headers=forged).status_code == 413
        shop = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        uploaded = client.put("/retailer/catalog", content=body, headers=shop)
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["upserted"] == MAX_CATALOG_ITEMS
    head = (
        f"PUT /retailer/catalog HTTP/1.1\r\nHost: frigo\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limits.CATALOG_BODY + 1}\r\n\r\n"
    )
    with raw_request(cloud, head) as connection:
        status, _, refused = read_response(connection)
    assert status == 413
    assert "several requests" in refused["detail"]


def test_the_middleware_reads_no_further_than_its_limit() -> None:
    """Count what a body sent in chunks costs: the chunk past the limit is the last one read."""
    limit, piece = 1000, b"x" * 300
    pulled: list[int] = []
    sent: list[Message] = []
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append("app")
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the app read the whole body")

    async def receive() -> Message:
        pulled.append(len(piece))
        return {"type": "http.request", "body": piece, "more_body": len(pulled) < 100}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = BodyLimitMiddleware(app, create_db_engine("sqlite://"), ManualClock(NOW), limit=limit)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [], "client": ("127.0.0.1", 1)}
    anyio.run(middleware, scope, receive, send)
    assert reached == ["app"]
    assert sum(pulled) == 4 * len(piece)  # 1,200 bytes: the first chunk past 1,000
    assert sent[0]["status"] == 413
    assert len([m for m in sent if m["type"] == "http.response.start"]) == 1


def test_every_body_but_a_catalog_fits_the_limit_at_its_longest() -> None:
    """The limits' reasons, measured: each route's largest body, every string escaped to ASCII."""
    code = gtin.make_gtin13("400000000001")
    longest = "é" * 200
    event = RetailerOrderEvent.model_validate(
        {
            "type": "substitution_proposed",
            "reason": "é" * 500,
            "substitutions": [
                {"gtin": code, "substitute_gtin": code, "substitute_name": longest, "substitute_quantity": 99}
            ]
            * 200,
            "delivered": [{"gtin": code, "quantity": 99}] * 200,
        }
    )
    slot = {"starts_at": "2026-11-30T13:00:00.000000+00:00", "ends_at": "2026-11-30T15:00:00.000000+00:00"}
    slots = SlotsUpload.model_validate({"slots": [{**slot, "capacity": 100_000}] * 1000})
    for model in (event, slots):
        size = len(json.dumps(model.model_dump(mode="json"), indent=2).encode())
        assert size < limits.MAX_BODY, (type(model).__name__, size)
    item = {"gtin": code, "name": longest, "price": 1234.99, "currency": "EUR", "pack_size": 1000.5}
    catalog = CatalogUpload.model_validate({"items": [{**item, "category": "é" * 40}] * MAX_CATALOG_ITEMS})
    assert len(json.dumps(catalog.model_dump(mode="json")).encode()) < limits.CATALOG_BODY


# -- rates --------------------------------------------------------------------------------------


def test_a_household_past_its_rate_waits_and_another_does_not(cloud: CloudService) -> None:
    mine, theirs = (
        bearer(cloud.engine, "household", "hh-fridge-a"),
        bearer(cloud.engine, "household", "hh-fridge-b"),
    )
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        answered = [
            client.get("/households/hh-fridge-a/inventory", headers=mine).status_code
            for _ in range(HOUSEHOLD_RATE)
        ]
        assert answered == [200] * HOUSEHOLD_RATE
        refused = client.get("/households/hh-fridge-a/inventory", headers=mine)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "household may send 5 per minute" in refused.json()["detail"]
        # Any route of the same token, POSTs too: the count is the token's.
        assert client.post("/households/hh-fridge-a/orders", headers=mine, json={}).status_code == 429
        assert client.get("/households/hh-fridge-b/inventory", headers=theirs).status_code == 200
        assert client.get("/healthz", headers=mine).status_code == 200  # never counted
        # An operator's token has its own, higher rate.
        assert (
            client.get("/households/hh-fridge-a/inventory", headers=bearer(cloud.engine)).status_code == 200
        )


def test_an_address_without_a_credential_is_limited_too(cloud: CloudService) -> None:
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        junk = [{"Authorization": f"Bearer frh_junk-{n}"} for n in range(ADDRESS_RATE)]
        assert [client.get("/households", headers=headers).status_code for headers in junk] == [401] * 3
        refused = client.get("/households")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "this client address without a live credential" in refused.json()["detail"]
        assert [client.get(path).status_code for path in ("/healthz", "/readyz") * 3] == [200, 503] * 3
        # A live credential is counted as itself, not as the address.
        own = bearer(cloud.engine, "household", "hh-fridge-a")
        assert client.get("/households/hh-fridge-a/inventory", headers=own).status_code == 200


def test_rates_are_settings_checked_at_start() -> None:
    with pytest.raises(ValueError, match=r"COUNT/PERIOD"):
        CloudSettings(rate_limit_household="many")
    both = "10/second;300/minute"
    assert CloudSettings(rate_limit_retailer=both).rate_limit_retailer == both
    assert [item.amount for item in limits.RateLimits(retailer=both).items("retailer")] == [10, 300]
