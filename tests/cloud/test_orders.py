"""The order API end to end, over HTTP against a running cloud service on SQLite and PostgreSQL:
an order's life from the household's request to the delivery, its state machine and ETags, the
substitution policy, delivery slots, Idempotency-Key retries (in a row and at once), the planner's
baskets becoming orders, and retailers kept to their own orders.

Each test makes its own household and retailer, so the tests share the service and nothing else.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlmodel import Session

from cloud.api.schemas.retail import OrderPublic
from cloud.commerce.orderviews import fridge_lines
from cloud.db.tables import ORDERS, PLANNED_ORDER_LINES, PLANNED_ORDERS, Household
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from shared.clock import ManualClock
from shared.gtin import make_gtin13
from shared.messages import OrderLine
from tests.support.auth import bearer
from tests.support.cloud import DATABASES, cloud_worker, database

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MILK, BREAD, BUTTER, CHEESE = (make_gtin13(f"40000000000{i}") for i in range(4))
SOLD_OUT = make_gtin13("400000000009")  # in the catalog, but not available
UNKNOWN = make_gtin13("400000000099")  # in no catalog
PRICES = {MILK: 1.25, BREAD: 2.5, BUTTER: 3.1, CHEESE: 4.75, SOLD_OUT: 9.0}


@pytest.fixture(scope="module", params=DATABASES)
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudService]:
    with (
        database(request.param, tmp_path_factory.mktemp("orders")) as url,
        cloud_worker(url, ManualClock(NOW), "orders") as service,
    ):
        yield service


@pytest.fixture
def client(cloud: CloudService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cloud.url, timeout=30) as opened:
        yield opened


@dataclass
class Shop:
    """A household of its own, with a retailer of its own whose catalog holds PRICES."""

    cloud: CloudService
    client: httpx.Client
    household: str
    home: dict[str, str]  # the household's Authorization header
    retailer: str
    key: dict[str, str]  # the retailer's Authorization header

    @property
    def orders(self) -> str:
        return f"/households/{self.household}/orders"

    def order(
        self, *lines: tuple[str, int], slot_id: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"lines": [{"gtin": code, "quantity": count} for code, count in lines]}
        if slot_id is not None:
            body["slot_id"] = slot_id
        return self.client.post(self.orders, json=body, headers={**self.home, **(headers or {})})

    def placed(self, *lines: tuple[str, int], slot_id: str | None = None) -> dict[str, Any]:
        response = self.order(*lines, slot_id=slot_id)
        assert response.status_code == 201, response.text
        placed: dict[str, Any] = response.json()
        return placed

    def event(self, order_id: str, kind: str, *, if_match: str | None = None, **body: Any) -> httpx.Response:
        headers = dict(self.key) if if_match is None else {**self.key, "If-Match": if_match}
        return self.client.post(
            f"/retailer/orders/{order_id}/events", json={"type": kind, **body}, headers=headers
        )

    def moved(self, order_id: str, kind: str, **body: Any) -> dict[str, Any]:
        response = self.event(order_id, kind, **body)
        assert response.status_code == 200, response.text
        moved: dict[str, Any] = response.json()
        assert moved["status"] == kind or kind == "substitution_proposed"
        assert response.headers["ETag"] == f'"{moved["version"]}"'
        return moved

    def cancel(self, order_id: str, if_match: str | None = None) -> httpx.Response:
        headers = dict(self.home) if if_match is None else {**self.home, "If-Match": if_match}
        return self.client.post(f"{self.orders}/{order_id}/cancel", headers=headers)

    def decide(self, order_id: str, decision: str) -> httpx.Response:
        return self.client.post(
            f"{self.orders}/{order_id}/substitutions", json={"decision": decision}, headers=self.home
        )

    def get(self, order_id: str) -> dict[str, Any]:
        response = self.client.get(f"{self.orders}/{order_id}", headers=self.home)
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == f'"{response.json()["version"]}"'
        found: dict[str, Any] = response.json()
        return found

    def publish_slots(self, *hours: int, capacity: int = 1) -> list[dict[str, Any]]:
        """Publish two-hour slots starting ``hours`` after NOW; return them, soonest first."""
        slots = [
            {
                "starts_at": (NOW + timedelta(hours=hour)).isoformat(),
                "ends_at": (NOW + timedelta(hours=hour + 2)).isoformat(),
                "capacity": capacity,
            }
            for hour in hours
        ]
        response = self.client.put("/retailer/slots", json={"slots": slots}, headers=self.key)
        assert response.status_code == 200, response.text
        published: list[dict[str, Any]] = response.json()
        return published

    def slots(self) -> dict[str, dict[str, Any]]:
        """Return the retailer's slots by id, as the retailer sees them."""
        response = self.client.get("/retailer/slots", headers=self.key)
        assert response.status_code == 200, response.text
        return {slot["id"]: slot for slot in response.json()}

    def count_orders(self) -> int:
        with self.cloud.engine.connect() as connection:
            found = connection.execute(
                select(func.count()).select_from(ORDERS).where(ORDERS.c.household_id == self.household)
            ).scalar_one()
        return int(found)


def new_household(cloud: CloudService) -> tuple[str, dict[str, str]]:
    household = f"hh-{uuid.uuid4().hex[:12]}"
    with Session(cloud.engine) as session:
        session.add(Household(id=household, name="A test household", created_at=NOW))
        session.commit()
    return household, bearer(cloud.engine, "household", household)


def new_retailer(cloud: CloudService, client: httpx.Client) -> tuple[str, dict[str, str]]:
    with Session(cloud.engine) as session:
        retailer, key = create_retailer(session, f"Shop {uuid.uuid4().hex[:10]}", NOW)
        retailer_id = retailer.id
        session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    items = [
        {
            "gtin": code,
            "name": f"Product {code}",
            "price": price,
            "currency": "EUR",
            "pack_size": 1,
            "available": code != SOLD_OUT,
        }
        for code, price in PRICES.items()
    ]
    uploaded = client.put("/retailer/catalog", json={"items": items}, headers=headers)
    assert uploaded.status_code == 200, uploaded.text
    return retailer_id, headers


def choose(shop: Shop, policy: str = "ask") -> None:
    response = shop.client.put(
        f"/households/{shop.household}/retailer",
        json={"retailer_id": shop.retailer, "substitution_policy": policy},
        headers=shop.home,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "household_id": shop.household,
        "retailer_id": shop.retailer,
        "substitution_policy": policy,
    }


def new_shop(cloud: CloudService, client: httpx.Client, policy: str = "ask") -> Shop:
    household, home = new_household(cloud)
    retailer, key = new_retailer(cloud, client)
    shop = Shop(cloud, client, household, home, retailer, key)
    choose(shop, policy)
    return shop


@pytest.fixture
def shop(cloud: CloudService, client: httpx.Client) -> Shop:
    return new_shop(cloud, client)


def history(order: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(change["actor"], change["from_status"], change["to_status"]) for change in order["history"]]


def at_once(
    cloud: CloudService, count: int, request: Callable[[httpx.Client], httpx.Response]
) -> list[httpx.Response]:
    """Send ``request`` from ``count`` threads, each with its own client, released together."""
    barrier = threading.Barrier(count)
    responses: list[httpx.Response] = []
    failures: list[BaseException] = []

    def send() -> None:
        try:
            with httpx.Client(base_url=cloud.url, timeout=30) as own:
                barrier.wait(timeout=10)
                responses.append(request(own))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(responses) == count
    return responses


# -- the whole life of an order -----------------------------------------------------------------


def test_an_order_goes_from_the_households_request_to_its_delivery(shop: Shop) -> None:
    (slot,) = shop.publish_slots(4)
    response = shop.order((MILK, 2), (BREAD, 1))
    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"{shop.orders}/{order['id']}"
    assert (order["status"], order["version"], order["retailer_id"]) == ("created", 1, shop.retailer)
    assert order["household_id"] == shop.household
    assert order["planned_order_id"] is None
    assert order["total"] == pytest.approx(2 * PRICES[MILK] + PRICES[BREAD])
    assert order["currency"] == "EUR"
    assert [(line["gtin"], line["quantity"], line["unit_price"]) for line in order["lines"]] == [
        (MILK, 2, PRICES[MILK]),
        (BREAD, 1, PRICES[BREAD]),
    ]
    assert order["slot"]["id"] == slot["id"]
    assert order["slot"]["booked"] == 1
    assert shop.slots()[slot["id"]]["booked"] == 1
    assert shop.get(order["id"]) == order
    order_id = order["id"]

    waiting = shop.client.get("/retailer/orders", params={"status": "created"}, headers=shop.key)
    assert waiting.status_code == 200
    assert [found["id"] for found in waiting.json()] == [order_id]

    assert shop.moved(order_id, "accepted")["version"] == 2
    assert shop.client.get("/retailer/orders", params={"status": "created"}, headers=shop.key).json() == []
    accepted = shop.client.get("/retailer/orders", params={"status": "accepted"}, headers=shop.key).json()
    assert [found["id"] for found in accepted] == [order_id]
    shop.moved(order_id, "picking")
    substitute = {
        "gtin": BREAD,
        "substitute_gtin": CHEESE,
        "substitute_name": "Rye bread",
        "substitute_quantity": 2,
    }
    proposed = shop.moved(order_id, "substitution_proposed", substitutions=[substitute])
    assert (proposed["status"], proposed["version"]) == ("substitution_proposed", 4)  # the policy is ask
    bread = proposed["lines"][1]
    assert (bread["substitution"], bread["substitute_gtin"], bread["substitute_quantity"]) == (
        "proposed",
        CHEESE,
        2,
    )

    approved = shop.decide(order_id, "approve")
    assert approved.status_code == 200, approved.text
    assert approved.headers["ETag"] == '"5"'
    assert approved.json()["status"] == "picking"
    assert [line["substitution"] for line in approved.json()["lines"]] == [None, "approved"]

    shop.moved(order_id, "dispatched")
    delivered = shop.moved(order_id, "delivered")
    assert delivered["version"] == 7
    # What came, by default: what was ordered, and the substitute's count for the approved swap.
    assert [line["delivered_quantity"] for line in delivered["lines"]] == [2, 2]
    assert fridge_lines(OrderPublic.model_validate(delivered)) == (
        OrderLine(code=MILK, quantity=2),
        OrderLine(code=CHEESE, quantity=2),
    )
    assert delivered["slot"]["id"] == slot["id"]
    assert shop.slots()[slot["id"]]["booked"] == 1  # a delivered order keeps its slot
    assert history(shop.get(order_id)) == [
        ("household", None, "created"),
        ("retailer", "created", "accepted"),
        ("retailer", "accepted", "picking"),
        ("retailer", "picking", "substitution_proposed"),
        ("household", "substitution_proposed", "picking"),
        ("retailer", "picking", "dispatched"),
        ("retailer", "dispatched", "delivered"),
    ]
    households_view = shop.client.get(shop.orders, headers=shop.home).json()
    assert [(found["id"], found["status"]) for found in households_view] == [(order_id, "delivered")]


def test_what_the_retailer_says_came_is_what_the_fridge_expects(shop: Shop) -> None:
    order_id = shop.placed((MILK, 3), (BUTTER, 1))["id"]
    for kind in ("accepted", "picking", "dispatched"):
        shop.moved(order_id, kind)
    delivered = shop.moved(order_id, "delivered", delivered=[{"gtin": MILK, "quantity": 1}])
    assert [line["delivered_quantity"] for line in delivered["lines"]] == [1, None]
    unknown = shop.event(order_id, "delivered", delivered=[{"gtin": CHEESE, "quantity": 1}])
    assert unknown.status_code == 409  # delivered is final, whatever the body says


# -- the state machine ---------------------------------------------------------------------------


def test_a_move_the_state_forbids_is_refused_naming_the_state(shop: Shop) -> None:
    order_id = shop.placed((MILK, 1))["id"]
    dispatched = shop.event(order_id, "dispatched")
    assert dispatched.status_code == 409
    assert "is created" in dispatched.json()["detail"]
    assert "cannot be dispatched" in dispatched.json()["detail"]
    undecidable = shop.decide(order_id, "approve")
    assert undecidable.status_code == 409
    assert "is created" in undecidable.json()["detail"]
    unproposed = shop.event(order_id, "substitution_proposed", substitutions=[])
    assert unproposed.status_code == 409  # not from created, whatever the body
    assert shop.get(order_id)["version"] == 1  # nothing changed

    for kind in ("accepted", "picking"):
        shop.moved(order_id, kind)
    empty = shop.event(order_id, "substitution_proposed")
    assert empty.status_code == 422
    assert "at least one substitution" in empty.json()["detail"]
    stranger = {
        "gtin": BREAD,
        "substitute_gtin": CHEESE,
        "substitute_name": "Cheese",
        "substitute_quantity": 1,
    }
    not_ordered = shop.event(order_id, "substitution_proposed", substitutions=[stranger])
    assert not_ordered.status_code == 422
    assert BREAD in not_ordered.json()["detail"]
    for kind in ("dispatched", "delivered"):
        shop.moved(order_id, kind)
    late = shop.cancel(order_id)
    assert late.status_code == 409
    assert "is delivered" in late.json()["detail"]
    assert "cancelled" in late.json()["detail"]
    final = shop.event(order_id, "accepted")
    assert final.status_code == 409
    assert "it is final" in final.json()["detail"]
    assert shop.get(order_id)["status"] == "delivered"


def test_the_household_cancels_before_dispatch_and_the_retailer_can_reject(shop: Shop) -> None:
    first = shop.placed((MILK, 1))["id"]
    shop.moved(first, "accepted")
    cancelled = shop.cancel(first)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.headers["ETag"] == '"3"'
    assert history(cancelled.json())[-1] == ("household", "accepted", "cancelled")
    assert shop.event(first, "picking").status_code == 409
    assert shop.cancel(first).status_code == 409

    second = shop.placed((BREAD, 1))["id"]
    rejected = shop.moved(second, "rejected", reason="we do not deliver there")
    assert rejected["history"][-1]["detail"] == "we do not deliver there"
    again = shop.cancel(second)
    assert again.status_code == 409
    assert "is rejected" in again.json()["detail"]


# -- optimistic concurrency ----------------------------------------------------------------------


def test_if_match_guards_against_overwriting_unseen_changes(shop: Shop) -> None:
    order_id = shop.placed((MILK, 1))["id"]
    current = shop.event(order_id, "accepted", if_match='"1"')
    assert current.status_code == 200, current.text
    assert current.headers["ETag"] == '"2"'
    stale = shop.event(order_id, "picking", if_match='"1"')
    assert stale.status_code == 412
    assert 'If-Match: "2"' in stale.json()["detail"]
    assert shop.get(order_id)["status"] == "accepted"
    stale_cancel = shop.cancel(order_id, if_match='"1"')
    assert stale_cancel.status_code == 412
    for malformed in ("two", '"v2"', '"-1"'):
        unreadable = shop.event(order_id, "picking", if_match=malformed)
        assert unreadable.status_code == 422, malformed
    assert shop.get(order_id)["version"] == 2  # nothing changed by the refused requests
    weak = shop.event(order_id, "picking", if_match='W/"2"')
    assert weak.status_code == 200
    assert weak.headers["ETag"] == '"3"'
    anything = shop.cancel(order_id, if_match="*")
    assert anything.status_code == 200
    assert anything.headers["ETag"] == '"4"'
    assert anything.json()["status"] == "cancelled"


def test_of_two_writers_with_the_same_version_one_wins(cloud: CloudService, shop: Shop) -> None:
    order_id = shop.placed((MILK, 1))["id"]
    headers = {**shop.key, "If-Match": '"1"'}
    responses = at_once(
        cloud,
        6,
        lambda own: own.post(
            f"/retailer/orders/{order_id}/events", json={"type": "accepted"}, headers=headers
        ),
    )
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] + [412] * 5, [response.text for response in responses]
    order = shop.get(order_id)
    assert (order["status"], order["version"]) == ("accepted", 2)
    assert history(order) == [("household", None, "created"), ("retailer", "created", "accepted")]


def test_of_two_writers_without_a_version_the_loser_hears_the_new_state(
    cloud: CloudService, shop: Shop
) -> None:
    order_id = shop.placed((MILK, 1))["id"]
    responses = at_once(
        cloud,
        6,
        lambda own: own.post(
            f"/retailer/orders/{order_id}/events", json={"type": "accepted"}, headers=shop.key
        ),
    )
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] + [409] * 5, [response.text for response in responses]
    assert all("is accepted" in r.json()["detail"] for r in responses if r.status_code == 409)
    assert shop.get(order_id)["version"] == 2


# -- the substitution policy ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["accept", "refuse"])
def test_a_substitution_policy_decides_at_once(
    cloud: CloudService, client: httpx.Client, policy: str
) -> None:
    shop = new_shop(cloud, client, policy)
    order_id = shop.placed((MILK, 2), (BREAD, 1))["id"]
    for kind in ("accepted", "picking"):
        shop.moved(order_id, kind)
    substitute = {
        "gtin": MILK,
        "substitute_gtin": CHEESE,
        "substitute_name": "Oat milk",
        "substitute_quantity": 3,
    }
    response = shop.event(order_id, "substitution_proposed", substitutions=[substitute])
    assert response.status_code == 200, response.text
    order = response.json()
    decision = "approved" if policy == "accept" else "rejected"
    assert order["status"] == "picking"
    assert order["version"] == 5
    assert response.headers["ETag"] == '"5"'
    assert [line["substitution"] for line in order["lines"]] == [decision, None]
    assert history(order)[-2:] == [
        ("retailer", "picking", "substitution_proposed"),
        ("policy", "substitution_proposed", "picking"),
    ]
    assert f"substitutions {decision}" in order["history"][-1]["detail"]
    assert shop.decide(order_id, "approve").status_code == 409  # nothing left to decide
    expected = (
        (OrderLine(code=BREAD, quantity=1), OrderLine(code=CHEESE, quantity=3))
        if policy == "accept"
        else (OrderLine(code=BREAD, quantity=1),)  # the refused line: none of it, nor a substitute
    )
    assert fridge_lines(OrderPublic.model_validate(order)) == expected
    for kind in ("dispatched", "delivered"):
        shop.moved(order_id, kind)
    delivered = shop.get(order_id)
    assert [line["delivered_quantity"] for line in delivered["lines"]] == (
        [3, 1] if policy == "accept" else [0, 1]
    )
    assert fridge_lines(OrderPublic.model_validate(delivered)) == expected


def test_the_household_rejects_a_proposed_substitution(shop: Shop) -> None:
    order_id = shop.placed((MILK, 2), (BREAD, 1))["id"]
    for kind in ("accepted", "picking"):
        shop.moved(order_id, kind)
    substitute = {
        "gtin": MILK,
        "substitute_gtin": CHEESE,
        "substitute_name": "Oat milk",
        "substitute_quantity": 1,
    }
    proposed = shop.moved(order_id, "substitution_proposed", substitutions=[substitute])
    assert proposed["status"] == "substitution_proposed"
    assert shop.event(order_id, "dispatched").status_code == 409  # the household decides first
    rejected = shop.decide(order_id, "reject")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "picking"
    assert [line["substitution"] for line in rejected.json()["lines"]] == ["rejected", None]
    assert fridge_lines(OrderPublic.model_validate(rejected.json())) == (OrderLine(code=BREAD, quantity=1),)
    assert history(rejected.json())[-1] == ("household", "substitution_proposed", "picking")


# -- delivery slots ------------------------------------------------------------------------------


def test_orders_fill_slots_up_to_their_capacity(shop: Shop) -> None:
    (past,) = shop.publish_slots(-3, capacity=10)  # over by now: never booked
    soon, later = shop.publish_slots(4, 8, capacity=1)
    visible = shop.client.get(f"/households/{shop.household}/slots", headers=shop.home).json()
    assert [slot["id"] for slot in visible] == [soon["id"], later["id"]]

    first = shop.placed((MILK, 1))
    second = shop.placed((MILK, 1))
    third = shop.placed((MILK, 1))
    assert first["slot"]["id"] == soon["id"]
    assert second["slot"]["id"] == later["id"]  # the first slot is full
    assert third["slot"] is None  # no slot has room
    assert {slot_id: slot["booked"] for slot_id, slot in shop.slots().items()} == {
        soon["id"]: 1,
        later["id"]: 1,
    }
    assert shop.client.get(f"/households/{shop.household}/slots", headers=shop.home).json() == []

    full = shop.order((MILK, 1), slot_id=later["id"])
    assert full.status_code == 422
    assert later["id"] in full.json()["detail"]
    nowhere = shop.order((MILK, 1), slot_id=str(uuid.uuid4()))
    assert nowhere.status_code == 422
    gone = shop.order((MILK, 1), slot_id=past["id"])
    assert gone.status_code == 422
    assert shop.count_orders() == 3

    # Closing a booked slot keeps its booking and takes no more, even once a place is freed.
    (lowered,) = shop.publish_slots(8, capacity=0)
    assert (lowered["id"], lowered["capacity"], lowered["booked"]) == (later["id"], 0, 1)

    assert shop.cancel(first["id"]).status_code == 200
    assert shop.slots()[soon["id"]]["booked"] == 0
    rebooked = shop.placed((BREAD, 1), slot_id=soon["id"])
    assert rebooked["slot"]["id"] == soon["id"]
    assert rebooked["slot"]["booked"] == 1
    rejected = shop.moved(second["id"], "rejected")
    assert rejected["slot"]["booked"] == 0  # a rejected order frees its slot too
    (raised,) = shop.publish_slots(8, capacity=5)
    assert (raised["capacity"], raised["booked"]) == (5, 0)


def test_orders_placed_at_once_never_overfill_a_slot(cloud: CloudService, shop: Shop) -> None:
    soon, later, last = shop.publish_slots(4, 8, 12, capacity=1)
    body = {"lines": [{"gtin": MILK, "quantity": 1}]}
    responses = at_once(cloud, 8, lambda own: own.post(shop.orders, json=body, headers=shop.home))
    assert [response.status_code for response in responses] == [201] * 8, [r.text for r in responses]
    booked = sorted(response.json()["slot"]["id"] for response in responses if response.json()["slot"])
    assert booked == sorted([soon["id"], later["id"], last["id"]])
    assert all(slot["booked"] == 1 for slot in shop.slots().values())
    assert shop.count_orders() == 8
    # Each order the service answered with is there for the household to read.
    for response in responses:
        assert shop.get(response.json()["id"])["id"] == response.json()["id"]


def test_a_slot_must_end_after_it_starts(shop: Shop) -> None:
    start = NOW + timedelta(hours=4)
    backwards = {"starts_at": start.isoformat(), "ends_at": start.isoformat(), "capacity": 1}
    response = shop.client.put("/retailer/slots", json={"slots": [backwards]}, headers=shop.key)
    assert response.status_code == 422
    assert shop.slots() == {}


# -- Idempotency-Key -----------------------------------------------------------------------------


def test_one_key_sent_five_times_places_one_order(shop: Shop) -> None:
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    responses = [shop.order((MILK, 2), (BUTTER, 1), headers=key) for _ in range(5)]
    assert [response.status_code for response in responses] == [201] * 5
    assert shop.count_orders() == 1
    assert len({response.content for response in responses}) == 1
    assert "Idempotent-Replayed" not in responses[0].headers
    for replay in responses[1:]:
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.headers["ETag"] == '"1"'
        assert replay.headers["Location"] == responses[0].headers["Location"]

    other_body = shop.order((MILK, 1), headers=key)
    assert other_body.status_code == 422
    assert "another request" in other_body.json()["detail"]
    too_long = shop.order((MILK, 2), (BUTTER, 1), headers={"Idempotency-Key": "k" * 256})
    assert too_long.status_code == 400
    longest = shop.order((MILK, 2), (BUTTER, 1), headers={"Idempotency-Key": "k" * 255})
    assert longest.status_code == 201
    without = shop.order((MILK, 2), (BUTTER, 1))
    assert without.status_code == 201
    assert shop.count_orders() == 3


def test_one_key_sent_ten_times_at_once_places_one_order(cloud: CloudService, shop: Shop) -> None:
    (slot,) = shop.publish_slots(4, capacity=5)
    key = f"concurrent-{uuid.uuid4()}"
    body = {"lines": [{"gtin": MILK, "quantity": 1}, {"gtin": BREAD, "quantity": 2}]}
    headers = {**shop.home, "Idempotency-Key": key}
    responses = at_once(cloud, 10, lambda own: own.post(shop.orders, json=body, headers=headers))
    codes = sorted(response.status_code for response in responses)
    assert set(codes) <= {201, 409}, [(r.status_code, r.text) for r in responses]
    created = [response for response in responses if response.status_code == 201]
    assert created
    assert len({response.content for response in created}) == 1
    for conflict in (response for response in responses if response.status_code == 409):
        assert "still running" in conflict.json()["detail"]
    assert shop.count_orders() == 1
    assert shop.slots()[slot["id"]]["booked"] == 1

    later = shop.client.post(shop.orders, json=body, headers={**shop.home, "Idempotency-Key": key})
    assert later.status_code == 201
    assert later.headers["Idempotent-Replayed"] == "true"
    assert later.content == created[0].content
    assert shop.count_orders() == 1


def test_idempotency_keys_belong_to_their_caller(
    cloud: CloudService, client: httpx.Client, shop: Shop
) -> None:
    neighbour = new_shop(cloud, client)
    key = {"Idempotency-Key": "weekly-groceries"}
    mine = shop.order((MILK, 1), headers=key)
    theirs = neighbour.order((MILK, 1), headers=key)
    assert mine.status_code == 201, mine.text
    assert theirs.status_code == 201, theirs.text
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["household_id"] == neighbour.household
    assert shop.count_orders() == 1
    assert neighbour.count_orders() == 1
    # The same caller's key still replays its own order.
    again = shop.order((MILK, 1), headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == mine.json()["id"]


def test_a_refused_request_is_replayed_too(shop: Shop) -> None:
    key = {"Idempotency-Key": f"refused-{uuid.uuid4()}"}
    first = shop.order((UNKNOWN, 1), headers=key)
    second = shop.order((UNKNOWN, 1), headers=key)
    assert first.status_code == second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert shop.count_orders() == 0


# -- requests that cannot make an order ----------------------------------------------------------


def test_an_order_needs_products_the_retailer_offers(shop: Shop) -> None:
    (slot,) = shop.publish_slots(4, capacity=3)
    unknown = shop.order((MILK, 1), (UNKNOWN, 1))
    assert unknown.status_code == 422
    assert UNKNOWN in unknown.json()["detail"]
    assert MILK not in unknown.json()["detail"]
    sold_out = shop.order((SOLD_OUT, 1))
    assert sold_out.status_code == 422
    assert SOLD_OUT in sold_out.json()["detail"]
    bad_check_digit = shop.order((MILK[:-1] + str((int(MILK[-1]) + 1) % 10), 1))
    assert bad_check_digit.status_code == 422
    assert shop.order().status_code == 422  # no lines
    assert shop.order((MILK, 0)).status_code == 422
    assert shop.count_orders() == 0
    assert shop.slots()[slot["id"]]["booked"] == 0  # nothing booked by the refused requests


def test_lines_of_one_product_make_one_line_at_the_catalogs_price(shop: Shop) -> None:
    order = shop.placed((MILK, 1), (BUTTER, 2), (MILK, 2))
    assert [(line["gtin"], line["quantity"]) for line in order["lines"]] == [(MILK, 3), (BUTTER, 2)]
    assert order["total"] == pytest.approx(3 * PRICES[MILK] + 2 * PRICES[BUTTER])
    repriced = [{"gtin": MILK, "name": "Milk", "price": 9.99, "currency": "EUR", "pack_size": 1}]
    assert shop.client.put("/retailer/catalog", json={"items": repriced}, headers=shop.key).status_code == 200
    kept = shop.get(order["id"])
    assert kept["total"] == order["total"]  # an order keeps the prices it was placed at
    assert kept["lines"][0]["unit_price"] == PRICES[MILK]


def test_a_household_without_a_retailer_is_told_to_choose_one(
    cloud: CloudService, client: httpx.Client
) -> None:
    household, home = new_household(cloud)
    response = client.post(
        f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 1}]}, headers=home
    )
    assert response.status_code == 422
    assert f"PUT /households/{household}/retailer" in response.json()["detail"]
    assert client.get(f"/households/{household}/slots", headers=home).json() == []
    unknown = client.put(
        f"/households/{household}/retailer", json={"retailer_id": "no-such-shop"}, headers=home
    )
    assert unknown.status_code == 422
    chosen = client.get(f"/households/{household}/retailer", headers=home).json()
    assert chosen == {"household_id": household, "retailer_id": None, "substitution_policy": "ask"}


# -- the planner's baskets -----------------------------------------------------------------------


def add_basket(cloud: CloudService, household: str, *lines: tuple[str, int], cycle: int) -> str:
    """Insert a basket the planner proposed; return its id."""
    basket = str(uuid.uuid4())
    with cloud.engine.begin() as connection:
        connection.execute(
            insert(PLANNED_ORDERS).values(
                id=basket,
                household_id=household,
                cycle=cycle,
                idempotency_key=f"{household}:{cycle}",
                status="proposed",
                created_at=NOW,
                cancellable_until=None,
            )
        )
        connection.execute(
            insert(PLANNED_ORDER_LINES),
            [
                {
                    "order_id": basket,
                    "code": code,
                    "packs": packs,
                    "quantity": float(packs),
                    "unit": "unit",
                    "reason": "runs out soon",
                }
                for code, packs in lines
            ],
        )
    return basket


def test_an_approved_basket_becomes_one_order_with_the_retailer(cloud: CloudService, shop: Shop) -> None:
    basket = add_basket(cloud, shop.household, (MILK, 2), (BUTTER, 1), ("LOOSE-APPLES", 3), cycle=1)
    skipped = add_basket(cloud, shop.household, (BREAD, 1), cycle=2)
    base = f"/households/{shop.household}/planned-orders"

    approved = shop.client.post(f"{base}/{basket}/approve", headers=shop.home)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    order_id = approved.json()["order_id"]
    assert order_id is not None
    order = shop.get(order_id)
    assert order["planned_order_id"] == basket
    assert order["status"] == "created"
    assert order["retailer_id"] == shop.retailer
    # What the retailer does not sell stays off the order.
    assert [(line["gtin"], line["quantity"]) for line in order["lines"]] == [(MILK, 2), (BUTTER, 1)]
    assert order["total"] == pytest.approx(2 * PRICES[MILK] + PRICES[BUTTER])
    assert history(order) == [("household", None, "created")]
    assert basket in order["history"][0]["detail"]
    retailers_view = shop.client.get(
        "/retailer/orders", params={"status": "created"}, headers=shop.key
    ).json()
    assert [found["id"] for found in retailers_view] == [order_id]

    twice = shop.client.post(f"{base}/{basket}/approve", headers=shop.home)
    assert twice.status_code == 409
    assert "is approved" in twice.json()["detail"]
    assert shop.count_orders() == 1
    listed = {found["id"]: found for found in shop.client.get(base, headers=shop.home).json()}
    assert listed[basket]["order_id"] == order_id

    skip = shop.client.post(f"{base}/{skipped}/skip", headers=shop.home)
    assert skip.status_code == 200, skip.text
    assert (skip.json()["status"], skip.json()["order_id"]) == ("skipped", None)
    assert shop.client.post(f"{base}/{skipped}/approve", headers=shop.home).status_code == 409
    assert shop.count_orders() == 1


def test_a_basket_approved_without_a_retailer_stays_a_proposal_to_shop(
    cloud: CloudService, client: httpx.Client
) -> None:
    household, home = new_household(cloud)
    basket = add_basket(cloud, household, (MILK, 2), cycle=1)
    approved = client.post(f"/households/{household}/planned-orders/{basket}/approve", headers=home)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["order_id"]) == ("approved", None)
    with cloud.engine.connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(ORDERS).where(ORDERS.c.household_id == household)
        ).scalar_one()
    assert count == 0


# -- retailers see their own orders only ---------------------------------------------------------


def test_another_retailer_can_neither_see_nor_change_an_order(
    cloud: CloudService, client: httpx.Client, shop: Shop
) -> None:
    order_id = shop.placed((MILK, 1))["id"]
    _, rival = new_retailer(cloud, client)
    assert client.get(f"/retailer/orders/{order_id}", headers=rival).status_code == 404
    assert client.get("/retailer/orders", headers=rival).json() == []
    for kind in ("accepted", "rejected", "cancelled"):
        refused = client.post(f"/retailer/orders/{order_id}/events", json={"type": kind}, headers=rival)
        assert refused.status_code == 404, (kind, refused.text)
    assert client.get(f"/retailer/orders/{order_id}", headers=shop.key).status_code == 200
    assert shop.get(order_id)["version"] == 1
    assert client.get(f"/retailer/orders/{order_id}").status_code == 401

    # Nor does another household, through its own routes.
    neighbour, theirs = new_household(cloud)
    assert client.get(f"/households/{neighbour}/orders/{order_id}", headers=theirs).status_code == 404
    assert client.post(f"/households/{neighbour}/orders/{order_id}/cancel", headers=theirs).status_code == 404
    assert shop.get(order_id)["status"] == "created"
