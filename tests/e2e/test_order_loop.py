"""Orders reach the fridge and come back from it, through a real Mosquitto: a delivered order is
expected on the fridge and reconciled by the next scan; a basket or an order answered on the
fridge changes in the cloud."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlmodel import Session

from cloud.commerce.baskets import tell_fridges
from cloud.db.tables import EVENTS, PLANNED_ORDER_LINES, PLANNED_ORDERS
from cloud.identity.devices import household_id_for
from cloud.identity.retailers import create_retailer
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared import gtin
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.services import Mosquitto

MILK, BUTTER, OAT_MILK = (gtin.make_gtin13(f"40012345000{i}") for i in range(3))
CATALOG = [
    {"gtin": code, "name": name, "price": price, "currency": "EUR", "pack_size": 1}
    for code, name, price in (
        (MILK, "Milk 1 l", 1.19),
        (BUTTER, "Butter 250 g", 2.49),
        (OAT_MILK, "Oat drink", 1.99),
    )
]


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Return ``check()`` once it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {check}")
        time.sleep(0.05)


def expected(agent: Agent) -> list[tuple[str, str, int, int]]:
    with agent._lock:
        return agent.recorder.orders.expected()


def fridge_status(agent: Agent, order_id: str) -> str | None:
    with agent._lock:
        return agent.recorder.orders.status(order_id)


@pytest.fixture
def setup(mosquitto: Mosquitto, database_url: str, start_cloud: CloudFactory, tmp_path: Path) -> Any:
    mqtt = mosquitto.mqtt()
    cloud = start_cloud(mqtt, database_url)
    agent = Agent(EdgeSettings(device_id="fridge-orders", data_dir=tmp_path / "fridge", mqtt=mqtt))
    agent.start()
    try:
        assert agent.scan(MILK)  # the fridge's first event enrolls it and makes its household
        assert agent.wait_drained(timeout=15)
        household = household_id_for(agent.device_id)
        with Session(cloud.engine) as session:
            retailer, key = create_retailer(session, f"Shop {uuid.uuid4().hex[:6]}", datetime.now(UTC))
            session.commit()
            retailer_id = retailer.id
        shop = httpx.Client(base_url=cloud.url, timeout=10, headers={"Authorization": f"Bearer {key}"})
        home = httpx.Client(
            base_url=cloud.url, timeout=10, headers=bearer(cloud.engine, "household", household)
        )
        assert shop.put("/retailer/catalog", json={"items": CATALOG}).status_code == 200
        assert (
            home.put(f"/households/{household}/retailer", json={"retailer_id": retailer_id}).status_code
            == 200
        )
        yield cloud, agent, household, shop, home
        shop.close()
        home.close()
    finally:
        agent.stop()


@pytest.mark.mosquitto
def test_a_delivered_order_is_expected_on_the_fridge_and_reconciled_by_the_next_scan(setup: Any) -> None:
    cloud, agent, household, shop, home = setup
    created = home.post(
        f"/households/{household}/orders",
        json={"lines": [{"gtin": BUTTER, "quantity": 2}, {"gtin": MILK, "quantity": 1}]},
        headers={"Idempotency-Key": "weekly-shop"},
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    eventually(lambda: fridge_status(agent, order_id) == "created")
    assert [(code, quantity) for _, code, quantity, _ in expected(agent)] == sorted([(BUTTER, 2), (MILK, 1)])

    for step in ("accepted", "picking"):
        assert shop.post(f"/retailer/orders/{order_id}/events", json={"type": step}).status_code == 200
    proposal = {
        "type": "substitution_proposed",
        "substitutions": [
            {
                "gtin": MILK,
                "substitute_gtin": OAT_MILK,
                "substitute_name": "Oat drink",
                "substitute_quantity": 1,
            }
        ],
    }
    assert shop.post(f"/retailer/orders/{order_id}/events", json=proposal).status_code == 200
    eventually(lambda: fridge_status(agent, order_id) == "substitution_proposed")
    # The household takes the oat drink, on the fridge.
    agent.answer_order(uuid.UUID(order_id), "accept_substitutions")
    order = eventually(
        lambda: (
            (o := home.get(f"/households/{household}/orders/{order_id}").json())["status"] == "picking" and o
        )
    )
    assert order["history"][-1]["actor"] == "fridge"
    assert shop.post(f"/retailer/orders/{order_id}/events", json={"type": "dispatched"}).status_code == 200
    assert shop.post(f"/retailer/orders/{order_id}/events", json={"type": "delivered"}).status_code == 200

    eventually(lambda: fridge_status(agent, order_id) == "delivered")
    lines = {
        (code, quantity, received) for oid, code, quantity, received in expected(agent) if oid == order_id
    }
    assert lines == {(BUTTER, 2, 0), (OAT_MILK, 1, 0)}

    # Unpacking: each scan-in is matched to the order, and the order is done when all came.
    for line in (BUTTER, OAT_MILK, BUTTER):
        (added,) = agent.scan(line)
        assert str(getattr(added, "order_id", None)) == order_id
    assert [line for line in expected(agent) if line[0] == order_id] == []
    # The next butter is not from the order.
    (extra,) = agent.scan(BUTTER)
    assert getattr(extra, "order_id", None) is None
    assert agent.wait_drained(timeout=15)
    with cloud.engine.connect() as connection:
        payloads = connection.execute(
            select(EVENTS.c.payload).where(EVENTS.c.household_id == household, EVENTS.c.type == "item_added")
        ).scalars()
        reconciled = [json.loads(p) for p in payloads if json.loads(p).get("order_id") == order_id]
    assert sorted(p["code"] for p in reconciled) == sorted([BUTTER, BUTTER, OAT_MILK])


@pytest.mark.mosquitto
def test_baskets_and_orders_answered_on_the_fridge_change_in_the_cloud(setup: Any) -> None:
    cloud, agent, household, shop, home = setup
    # A basket the planner proposed: the fridge shows it, the household approves it there.
    basket = str(uuid.uuid4())
    now = datetime.now(UTC)
    with cloud.engine.begin() as connection:
        connection.execute(
            insert(PLANNED_ORDERS).values(
                id=basket,
                household_id=household,
                cycle=1,
                idempotency_key=f"{household}:1",
                status="proposed",
                created_at=now,
            )
        )
        connection.execute(
            insert(PLANNED_ORDER_LINES).values(
                order_id=basket, code=MILK, packs=2, quantity=2.0, unit="unit", reason="runs out on Thursday"
            )
        )
        tell_fridges(connection, basket, now)
    eventually(lambda: fridge_status(agent, basket) == "proposed")
    assert [line for line in expected(agent) if line[0] == basket] == []  # a proposal is not on its way
    agent.answer_order(uuid.UUID(basket), "approve")
    planned = eventually(
        lambda: (p := home.get(f"/households/{household}/planned-orders").json()[0])["order_id"] and p
    )
    assert planned["status"] == "approved"
    order_id = planned["order_id"]
    order = home.get(f"/households/{household}/orders/{order_id}").json()
    assert [(line["gtin"], line["quantity"]) for line in order["lines"]] == [(MILK, 2)]
    assert shop.get("/retailer/orders", params={"status": "created"}).json()[-1]["id"] == order_id

    # The order, cancelled on the fridge before it is dispatched.
    eventually(lambda: fridge_status(agent, order_id) == "created")
    agent.answer_order(uuid.UUID(order_id), "cancel")
    cancelled = eventually(
        lambda: (
            (o := home.get(f"/households/{household}/orders/{order_id}").json())["status"] == "cancelled"
            and o
        )
    )
    assert cancelled["history"][-1]["actor"] == "fridge"
    eventually(lambda: fridge_status(agent, order_id) == "cancelled")
    assert [line for line in expected(agent) if line[0] == order_id] == []

    # An answer that comes too late changes nothing: the order stays cancelled.
    agent.answer_order(uuid.UUID(order_id), "accept_substitutions")
    assert agent.wait_drained(timeout=15)
    time.sleep(1.0)
    assert home.get(f"/households/{household}/orders/{order_id}").json()["status"] == "cancelled"
    assert timedelta(0) <= datetime.now(UTC) - now < timedelta(minutes=2)


@pytest.mark.mosquitto
def test_consents_granted_and_withdrawn_on_the_fridge_hold_in_the_cloud(setup: Any) -> None:
    _cloud, agent, household, shop, home = setup
    retailer = home.get(f"/households/{household}/retailer").json()["retailer_id"]
    agent.change_consent(retailer, "offers", "grant")

    def active() -> dict[str, str]:
        grants = home.get(f"/households/{household}/consents", params={"active": "true"}).json()
        return {g["purpose"]: g["channel"] for g in grants}

    assert eventually(lambda: active().get("offers")) == "fridge"
    placed = home.post(f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 1}]})
    assert placed.status_code == 201
    # One command on the fridge withdraws ordering: the open order is cancelled, no new one goes out.
    agent.change_consent(retailer, "ordering", "withdraw")
    eventually(lambda: "ordering" not in active())
    order = home.get(f"/households/{household}/orders/{placed.json()['id']}").json()
    assert order["status"] == "cancelled"
    refused = home.post(f"/households/{household}/orders", json={"lines": [{"gtin": MILK, "quantity": 1}]})
    assert refused.status_code == 422
    assert shop.get("/retailer/orders", params={"status": "created"}).json() == []
