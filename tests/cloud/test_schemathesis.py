"""Schemathesis against the cloud API's OpenAPI spec: every operation, every check, authenticated.

A cloud worker on SQLite, connected to an embedded broker, serves the API on a free port (real
threads: the Idempotency-Key middleware and the sessions run as in production). It is seeded so
that the operations do something: a household with a month of events, a proposed basket and an
order with a retailer; the retailer with a catalog, delivery slots and a webhook endpoint.
Schemathesis sends the spec's examples, its coverage cases and fuzzed requests (valid and invalid)
to every operation and runs all of its checks on every response: no 5xx, status codes, content
types, headers and bodies as declared, valid data accepted, invalid data refused, authentication
enforced, unsupported methods refused.

The suite sends FRIGO_SCHEMATHESIS_EXAMPLES (default 15) fuzzed examples per operation with the
seed FRIGO_SCHEMATHESIS_SEED (default 1); the full run recorded in docs/BENCHMARKS.md sends 100:

    FRIGO_SCHEMATHESIS_EXAMPLES=100 .venv/bin/pytest -q tests/cloud/test_schemathesis.py
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from sqlmodel import Session

from cloud.app import create_app
from cloud.commerce.baskets import plan_cycle
from cloud.db.engine import create_db_engine
from cloud.identity.retailers import create_retailer
from cloud.ingest.stats import IngestStats
from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import gtin, topics
from shared.clock import ManualClock
from shared.messages import ItemAdded, ItemConsumed, encode
from shared.mqtt import MqttSettings
from tests.support.auth import bearer
from tests.support.factories import event_id
from tests.support.services import free_port

Case = schemathesis.Case[Any]
# Hypothesis' caches (the constants of the modules under test, Unicode tables) go to the temporary
# directory, not to .hypothesis/ in the repository; they are written as the tests are collected.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "frigo-hypothesis")

EXAMPLES = int(os.environ.get("FRIGO_SCHEMATHESIS_EXAMPLES", "15"))
# One seed, so that the suite sends the same requests every time; set another to explore further.
SEED = int(os.environ.get("FRIGO_SCHEMATHESIS_SEED", "1"))
START = datetime(2026, 10, 31, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOUSEHOLD, DEVICE = "hh-fridge-a", "fridge-a"
# Other households for the routes that change a household's settings or erase it: the first one
# keeps its retailer and its data, so that the other routes find them all along.
OTHER_HOUSEHOLDS = {
    "/households/{household_id}/retailer": "hh-fridge-b",
    "/households/{household_id}/planning": "hh-fridge-b",
    "/households/{household_id}": "hh-fridge-c",  # DELETE: erased at its first call
}
PRODUCTS = [gtin.make_gtin13(f"40000000000{i}") for i in range(3)]
# A rate the suite's requests never reach.
UNLIMITED = "100000/minute"
# The statuses Schemathesis accepts by default for a request its schema calls valid.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
# Operations whose answer to a valid request also depends on what the database holds, which no
# schema can say; the spec documents each status (412 for a stale If-Match, 422 with the reason):
STATEFUL_REFUSALS = {
    # a retailer id that names no retailer
    "PUT /households/{household_id}/retailer": ["422"],
    # ... and a consent to one, or one that expires in the past (now is the worker's clock)
    "POST /households/{household_id}/consents": ["422"],
    # a product not in the retailer's catalog or not available, a full slot, no retailer chosen
    "POST /households/{household_id}/orders": ["422"],
    # If-Match naming a version the order no longer has
    "POST /households/{household_id}/orders/{order_id}/cancel": ["412"],
    "POST /households/{household_id}/orders/{order_id}/substitutions": ["412", "422"],
    # ... or substitutions and deliveries of products the order does not hold
    "POST /retailer/orders/{order_id}/events": ["412", "422"],
    # a slot that ends before it starts (two fields; JSON Schema cannot compare them)
    "PUT /retailer/slots": ["422"],
    # a host name that does not resolve
    "POST /retailer/webhooks": ["422"],
    # a campaign that ends before it starts, for a product not in the catalog
    "POST /retailer/campaigns": ["422"],
}


def valid_gtins() -> st.SearchStrategy[str]:
    """GTIN-8, -12, -13 and -14 with their check digit: the spec's format "gtin"."""
    bodies = st.sampled_from([7, 11, 12, 13]).flatmap(
        lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
    )
    return bodies.map(lambda body: body + str(gtin.check_digit(body)))


# The seeded catalog's products half the time, so that orders get placed, not only refused.
schemathesis.openapi.format("gtin", st.sampled_from(PRODUCTS) | valid_gtins())


def spec() -> dict[str, Any]:
    """Return the OpenAPI spec the cloud API serves (built from the app; nothing is started)."""
    return create_app(create_db_engine("sqlite://"), IngestStats(), lambda: False).openapi()


SPEC = spec()
# The secrets the seeded worker issued, read by the auth providers below.
SECRETS: dict[str, str] = {}
schema = schemathesis.openapi.from_dict(
    SPEC,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # No example database: nothing is written into the repository.
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-name": name,
                    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + refused}},
                }
                for name, refused in STATEFUL_REFUSALS.items()
            ],
        }
    ),
)


@schema.auth().apply_to(path_regex="^/retailer/")
class RetailerKeyAuth:
    """The seeded retailer's API key on /retailer/*."""

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return SECRETS["retailer"]

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@schema.auth().skip_for(path_regex="^/retailer/")
class OperatorTokenAuth:
    """An operator's token everywhere else: it opens every household's routes and the admin ones."""

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return SECRETS["operator"]

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@dataclass(frozen=True)
class Seeded:
    """The worker, and the ids of what it was seeded with."""

    service: CloudService
    order_id: str
    retailer_order_id: str  # another order, not cancelled by the household's routes
    planned_order_id: str
    endpoint_id: str
    slot_id: str

    def ids(self, path: str) -> dict[str, str]:
        """Return the seeded records' ids for the path parameters of ``path``."""
        order = self.order_id
        if "/planned-orders/" in path:
            order = self.planned_order_id
        elif path.startswith("/retailer/"):
            order = self.retailer_order_id
        ids = {
            "household_id": OTHER_HOUSEHOLDS.get(path, HOUSEHOLD),
            "order_id": order,
            "endpoint_id": self.endpoint_id,
        }
        return {name: value for name, value in ids.items() if f"{{{name}}}" in path}

    def reuse(self, case: Case) -> None:
        """Point the case at the seeded records instead of the ids it drew."""
        case.path_parameters.update(self.ids(case.operation.path))
        if isinstance(case.body, dict) and isinstance(case.body.get("slot_id"), str):
            case.body = {**case.body, "slot_id": self.slot_id}


def fridge_events() -> list[tuple[str, bytes]]:
    """A month of the first fridge (a litre of milk every four days, 250 ml a day); an event of each
    of the other households' fridges."""
    events: list[ItemAdded | ItemConsumed] = []

    def ids() -> dict[str, Any]:
        n = len(events) + 1
        return {"event_id": event_id(DEVICE, n), "device_id": DEVICE, "seq": n, "lot_id": n}

    for day in range(30):
        at = START + timedelta(days=day)
        if day % 4 == 0:
            events.append(ItemAdded(**ids(), occurred_at=at, code=PRODUCTS[0], quantity=1000, unit="ml"))
        noon = at + timedelta(hours=12)
        events.append(ItemConsumed(**ids(), occurred_at=noon, code=PRODUCTS[0], quantity=250, unit="ml"))
    for household in sorted(set(OTHER_HOUSEHOLDS.values())):
        device = household.removeprefix("hh-")
        events.append(
            ItemAdded(
                event_id=event_id(device, 1),
                device_id=device,
                seq=1,
                lot_id=1,
                occurred_at=START,
                code="EGGS",
            )
        )
    return [(topics.events(event.device_id), encode(event)) for event in events]


def seed(service: CloudService, clock: ManualClock) -> Seeded:
    """Give the worker a retailer, a catalog, slots, a webhook endpoint, a basket and an order."""
    with Session(service.engine) as session:
        retailer, key = create_retailer(session, "Shop One", NOW)
        session.commit()
        retailer_id = retailer.id
    plan_cycle(service.engine, clock, 900.0)
    admin = bearer(service.engine)
    shop = {"Authorization": f"Bearer {key}"}
    items = [
        {"gtin": code, "name": f"Product {i}", "price": 1.5 + i, "currency": "EUR", "pack_size": 1}
        for i, code in enumerate(PRODUCTS)
    ]
    slots = [
        {
            "starts_at": (NOW + timedelta(hours=hours)).isoformat(),
            "ends_at": (NOW + timedelta(hours=hours + 2)).isoformat(),
            "capacity": 10_000,
        }
        for hours in (4, 8, 28)
    ]
    lines = [{"gtin": PRODUCTS[0], "quantity": 2}, {"gtin": PRODUCTS[1], "quantity": 1}]
    with httpx.Client(base_url=service.url, timeout=10) as client:
        assert client.get("/openapi.json").json() == SPEC
        client.put("/retailer/catalog", headers=shop, json={"items": items}).raise_for_status()
        published = client.put("/retailer/slots", headers=shop, json={"slots": slots})
        published.raise_for_status()
        endpoint = client.post("/retailer/webhooks", headers=shop, json={"url": "http://127.0.0.1:9/hook"})
        endpoint.raise_for_status()
        chosen = client.put(
            f"/households/{HOUSEHOLD}/retailer", headers=admin, json={"retailer_id": retailer_id}
        )
        chosen.raise_for_status()
        order, retailer_order = (
            client.post(f"/households/{HOUSEHOLD}/orders", headers=admin, json={"lines": lines}) for _ in "12"
        )
        order.raise_for_status()
        retailer_order.raise_for_status()
        planned = client.get(f"/households/{HOUSEHOLD}/planned-orders", headers=admin)
        planned.raise_for_status()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:  # the subscriber connects to the broker
            assert time.monotonic() < deadline, "the worker did not connect to the broker"
            time.sleep(0.05)
    SECRETS.update(operator=admin["Authorization"].removeprefix("Bearer "), retailer=key)
    return Seeded(
        service=service,
        order_id=order.json()["id"],
        retailer_order_id=retailer_order.json()["id"],
        planned_order_id=planned.json()[0]["id"],
        endpoint_id=endpoint.json()["id"],
        slot_id=published.json()[-1]["id"],
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'cloud.db'}",
        mqtt=MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1"),
        http_port=0,
        client_id=f"schemathesis-{uuid.uuid4().hex[:8]}",
        auto_enroll=True,
        planning=False,
        # The seeded webhook endpoint is on loopback.
        webhook_allow_private=True,
        # Schemathesis sends thousands of requests a minute with one operator's token, one retailer's
        # key and none, all from 127.0.0.1: the limits are not what it tests (tests/cloud/test_limits.py).
        rate_limit_household=UNLIMITED,
        rate_limit_operator=UNLIMITED,
        rate_limit_retailer=UNLIMITED,
        rate_limit_address=UNLIMITED,
    )
    clock = ManualClock(NOW)
    service = CloudService(settings, clock)
    service.ingestor.process(fridge_events())
    service.start()
    try:
        yield seed(service, clock)
    finally:
        service.stop()
        broker.stop()


@schema.parametrize()
@schema.given(reuse_seeded=st.booleans())
def test_every_operation_conforms_to_the_spec(case: Case, reuse_seeded: bool, seeded: Seeded) -> None:
    if reuse_seeded:  # else the drawn ids, which name nothing: the 404s are tested too
        seeded.reuse(case)
    case.call_and_validate(base_url=seeded.service.url)
