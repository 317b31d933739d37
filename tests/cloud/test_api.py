"""The HTTP API served by a real uvicorn of a CloudService, on SQLite and PostgreSQL.

Data goes in through Ingestor.process(); requests go out through httpx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from cloud.api.dependencies import MAX_PAGE
from cloud.db.tables import Device
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.clock import ManualClock
from shared.messages import AvailabilityChanged, TelemetryReported, encode
from shared.mqtt import MqttSettings
from tests.support.auth import bearer
from tests.support.factories import T0, added, event_id, msg, removed
from tests.support.services import free_port, postgres_database

RECEIVED = T0 + timedelta(minutes=10)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def start_service(database_url: str) -> CloudService:
    """Start a worker serving HTTP on a free port; its MQTT broker does not exist (it keeps retrying)."""
    settings = CloudSettings(
        database_url=database_url,
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        http_port=0,
        client_id=f"frigo-api-test-{uuid.uuid4().hex[:8]}",
        auto_enroll=True,
    )
    service = CloudService(settings, ManualClock(RECEIVED))
    service.start()
    return service


def populate(service: CloudService) -> None:
    """Two households: hh-fridge-a with fridges a and c, hh-fridge-b with fridge b.

    Only fridge a said it is online (its retained availability): b only sent events, c nothing.
    """
    ingest = service.ingestor.process
    ingest(
        [
            msg(added("fridge-a", 1, "MILK", 2)),
            msg(added("fridge-a", 2, "EGGS", 6)),
            msg(removed("fridge-a", 3, "MILK")),
            msg(added("fridge-a", 4, "BUTTER")),
            msg(removed("fridge-a", 5, "BUTTER")),
            msg(added("fridge-b", 1, "MILK", 5)),
        ]
    )
    # A second fridge in the same household, enrolled by hand.
    with Session(service.engine) as session:
        session.add(Device(id="fridge-c", household_id="hh-fridge-a", created_at=T0))
        session.commit()
    telemetry = TelemetryReported(
        device_id="fridge-a", occurred_at=T0 + timedelta(minutes=5), outbox_depth=3, uptime_s=60
    )
    online = AvailabilityChanged(device_id="fridge-a", state="online", since=T0 + timedelta(minutes=4))
    ingest(
        [
            msg(added("fridge-c", 1, "APPLE", 3)),
            msg(added("fridge-a", 6, "4006381333931")),
            msg(added("fridge-a", 1, "MILK", 2)),  # a redelivery
            (topics.events("fridge-a"), b"not json"),
            (topics.telemetry("fridge-a"), encode(telemetry)),
            (topics.availability("fridge-a"), encode(online)),
        ]
    )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudService]:
    """One populated worker per database, shared by the tests that only read.

    Starting and stopping a worker takes about a second (the MQTT client sleeps between
    reconnection attempts), so the read-only tests share one instead of starting their own.
    """
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'cloud.db'}"
        else:
            url = stack.enter_context(postgres_database())
        service = start_service(url)
        stack.callback(service.stop)
        populate(service)
        yield service


@pytest.fixture
def client(populated: CloudService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=populated.url, timeout=10, headers=bearer(populated.engine)) as client:
        yield client


@pytest.fixture
def fresh(database_url: str) -> Iterator[CloudService]:
    """A worker of the test's own on an empty database."""
    service = start_service(database_url)
    try:
        yield service
    finally:
        service.stop()


def test_fresh_worker_counts_what_it_ingests(fresh: CloudService) -> None:
    with httpx.Client(base_url=fresh.url, timeout=10, headers=bearer(fresh.engine)) as client:
        assert client.get("/households").json() == []
        assert client.get("/stats").json() == {
            "received": 0,
            "stored": 0,
            "duplicates": 0,
            "rejected": {},
            "batches": 0,
            "last_commit_ms": 0.0,
            "broker_connected": False,
        }

        fresh.ingestor.process([msg(added("fridge-a", 1, "MILK")), (topics.events("fridge-a"), b"{}")])
        fresh.ingestor.process([msg(added("fridge-a", 1, "MILK")), msg(removed("fridge-a", 2, "MILK"))])

        stats = client.get("/stats").json()
        assert stats.pop("last_commit_ms") > 0
        assert stats == {
            "received": 4,
            "stored": 2,
            "duplicates": 1,
            "rejected": {"invalid_payload": 1},
            "batches": 2,
            "broker_connected": False,
        }
        # Everything taken out again: no items, but the events count.
        assert client.get("/households/hh-fridge-a/inventory").json() == {
            "household_id": "hh-fridge-a",
            "items": [],
            "event_count": 2,
        }


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_households_list_their_devices(client: httpx.Client) -> None:
    response = client.get("/households")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": "hh-fridge-a",
            "name": "Household of fridge fridge-a",
            "devices": [
                {
                    "id": "fridge-a",
                    "online": True,
                    "last_seen_at": iso(T0 + timedelta(minutes=5)),
                    "outbox_depth": 3,
                },
                {"id": "fridge-c", "online": False, "last_seen_at": None, "outbox_depth": None},
            ],
        },
        {
            "id": "hh-fridge-b",
            "name": "Household of fridge fridge-b",
            # Enrolled by its events, but never said online: offline.
            "devices": [{"id": "fridge-b", "online": False, "last_seen_at": None, "outbox_depth": None}],
        },
    ]


def test_inventory_lists_positive_quantities_sorted_by_code(client: httpx.Client) -> None:
    response = client.get("/households/hh-fridge-a/inventory")
    assert response.status_code == 200
    assert response.json() == {
        "household_id": "hh-fridge-a",
        "items": [
            {"code": "4006381333931", "quantity": 1},
            {"code": "APPLE", "quantity": 3},
            {"code": "EGGS", "quantity": 6},
            {"code": "MILK", "quantity": 1},
        ],
        "event_count": 7,
    }
    assert client.get("/households/hh-fridge-b/inventory").json() == {
        "household_id": "hh-fridge-b",
        "items": [{"code": "MILK", "quantity": 5}],
        "event_count": 1,
    }


def _page(client: httpx.Client, household_id: str, **params: int) -> list[dict[str, Any]]:
    response = client.get(f"/households/{household_id}/events", params=params)
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()
    return page


def test_events_are_paged_in_storage_order(client: httpx.Client) -> None:
    everything = _page(client, "hh-fridge-a")
    assert [(e["device_id"], e["seq"]) for e in everything] == [
        ("fridge-a", 1),
        ("fridge-a", 2),
        ("fridge-a", 3),
        ("fridge-a", 4),
        ("fridge-a", 5),
        ("fridge-c", 1),
        ("fridge-a", 6),
    ]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    assert len(set(ids)) == 7
    assert everything[2] == {
        "id": ids[2],
        "event_id": str(event_id("fridge-a", 3)),
        "device_id": "fridge-a",
        "seq": 3,
        "type": "item_consumed",
        "code": "MILK",
        "quantity_delta": -1,
        "occurred_at": iso(T0 + timedelta(seconds=3)),
        "received_at": iso(RECEIVED),
    }

    first = _page(client, "hh-fridge-a", limit=3)
    second = _page(client, "hh-fridge-a", limit=3, after=first[-1]["id"])
    third = _page(client, "hh-fridge-a", limit=3, after=second[-1]["id"])
    assert [len(first), len(second), len(third)] == [3, 3, 1]
    assert first + second + third == everything
    assert _page(client, "hh-fridge-a", after=third[-1]["id"]) == []
    assert _page(client, "hh-fridge-a", after=ids[4], limit=1) == [everything[5]]
    assert _page(client, "hh-fridge-a", limit=MAX_PAGE) == everything

    other = _page(client, "hh-fridge-b")
    assert [(e["device_id"], e["seq"], e["quantity_delta"]) for e in other] == [("fridge-b", 1, 5)]


@pytest.mark.parametrize(
    "query", [{"limit": MAX_PAGE + 1}, {"limit": 0}, {"after": -1}, {"limit": "many"}], ids=str
)
def test_events_reject_bad_paging(client: httpx.Client, query: dict[str, Any]) -> None:
    response = client.get("/households/hh-fridge-a/events", params=query)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", next(iter(query))]


@pytest.mark.parametrize("resource", ["inventory", "events"])
def test_unknown_household_is_404_with_a_hint(client: httpx.Client, resource: str) -> None:
    response = client.get(f"/households/nope/{resource}")
    assert response.status_code == 404
    assert response.json() == {"detail": "no household 'nope'; GET /households lists them"}


def test_docs_and_openapi_are_served(client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text
    assert "swagger-ui" in docs.text

    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    body = spec.json()
    assert body["info"]["title"] == "Frigo cloud"
    assert body["info"]["version"] == "0.1.0"
    assert sorted(body["paths"]) == [
        "/admin/dead-letters",
        "/admin/retailers/{retailer_id}/keys",
        "/admin/retailers/{retailer_id}/keys/{key_id}/revoke",
        "/admin/tokens",
        "/admin/tokens/{token_id}/revoke",
        "/healthz",
        "/households",
        "/households/{household_id}",
        "/households/{household_id}/consents",
        "/households/{household_id}/consents/withdraw",
        "/households/{household_id}/events",
        "/households/{household_id}/export",
        "/households/{household_id}/forecast",
        "/households/{household_id}/inventory",
        "/households/{household_id}/offers",
        "/households/{household_id}/offers/{offer_id}/answer",
        "/households/{household_id}/orders",
        "/households/{household_id}/orders/{order_id}",
        "/households/{household_id}/orders/{order_id}/cancel",
        "/households/{household_id}/orders/{order_id}/substitutions",
        "/households/{household_id}/planned-orders",
        "/households/{household_id}/planned-orders/{order_id}/approve",
        "/households/{household_id}/planned-orders/{order_id}/cancel",
        "/households/{household_id}/planned-orders/{order_id}/skip",
        "/households/{household_id}/planning",
        "/households/{household_id}/retailer",
        "/households/{household_id}/shopping-list",
        "/households/{household_id}/slots",
        "/households/{household_id}/transparency",
        "/metrics",
        "/readyz",
        "/retailer/campaigns",
        "/retailer/campaigns/{campaign_id}/results",
        "/retailer/campaigns/{campaign_id}/stop",
        "/retailer/catalog",
        "/retailer/orders",
        "/retailer/orders/{order_id}",
        "/retailer/orders/{order_id}/events",
        "/retailer/slots",
        "/retailer/webhooks",
        "/retailer/webhooks/{endpoint_id}",
        "/retailer/webhooks/{endpoint_id}/deliveries",
        "/retailer/webhooks/{endpoint_id}/enable",
        "/retailer/webhooks/{endpoint_id}/rotate",
        "/stats",
    ]
    limit = next(
        p
        for p in body["paths"]["/households/{household_id}/events"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == MAX_PAGE
