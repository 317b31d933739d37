"""A retailer's endpoint that answers one byte a second holds up nothing but its own webhook.

Through a real Mosquitto and a running worker: while the webhook drips, commands for a fridge
(queued as the API queues them, published by the worker's dispatcher) reach the subscribed fridge
within a second each; the webhook is abandoned at its 15 s deadline and waits for its retry.
Before the webhook lane, the dispatcher's one thread sent webhooks and commands both, and these
commands waited for the whole answer (46 bytes: 46 s).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session

from cloud.db.engine import as_utc
from cloud.db.tables import WEBHOOK_DELIVERIES
from cloud.identity import devices
from cloud.identity.retailers import create_retailer
from cloud.outbox import commands, deliveries
from shared.messages import CatalogUpdated, ProductInfo
from tests.conftest import CloudFactory
from tests.support.listener import CommandListener
from tests.support.services import Mosquitto
from tests.support.slow import NO_CONTENT, SlowReceiver

DEVICE = "fridge-beside-a-slow-shop"
MILK = ProductInfo(code="4006381333931", name="Milk 1 l")
# Commands sent while the webhook drips, one every COMMAND_EVERY_S.
COMMANDS = 5
COMMAND_EVERY_S = 1.0
# The isolation asked for: a command published while a webhook is in flight reaches its fridge in
# this. The dispatcher's tick is 0.25 s, so a command takes about that when nothing holds it up.
COMMAND_WITHIN_S = 1.0


def eventually(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {check}")
        time.sleep(0.02)
    return result


@pytest.mark.mosquitto
@pytest.mark.slow
def test_a_webhook_dripping_one_byte_a_second_delays_no_fridge_command(
    database_url: str, mosquitto: Mosquitto, start_cloud: CloudFactory
) -> None:
    # The database first: set up first, it is dropped last, after the worker has stopped.
    mqtt = mosquitto.mqtt()
    # The receiver is on loopback: allowed, over http, only because private webhooks are.
    cloud = start_cloud(mqtt, database_url, webhook_allow_private=True, planning=False)
    with Session(cloud.engine) as session:
        devices.provision(session, DEVICE)
        retailer, key = create_retailer(session, f"Slow Shop {uuid.uuid4().hex[:6]}", datetime.now(UTC))
        session.commit()
        retailer_id = retailer.id
    household = devices.household_id_for(DEVICE)
    drip = SlowReceiver(every_s=1.0)
    fridge = CommandListener(mqtt, DEVICE)
    try:
        with httpx.Client(base_url=cloud.url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as shop:
            registered = shop.post("/retailer/webhooks", json={"url": drip.url()})
            assert registered.status_code == 201, registered.text
        with cloud.engine.begin() as connection:
            deliveries.enqueue(
                connection,
                retailer_id,
                "order.created",
                {"id": "order-in-a-slow-shop"},
                datetime.now(UTC),
                household_id=household,
                order_id=None,
            )
        (visit,) = eventually(drip.got, timeout=10)  # the worker's lane has it in flight

        latencies = []
        for _ in range(COMMANDS):
            queued = time.monotonic()
            with cloud.engine.begin() as connection:
                commands.enqueue_for_household(
                    connection,
                    household,
                    lambda device: CatalogUpdated(device_id=device, products=(MILK,)),
                    datetime.now(UTC),
                )
            arrived, command = fridge.next(timeout=30)
            assert command.type == "catalog_updated"
            latencies.append(arrived - queued)
            time.sleep(max(0.0, queued + COMMAND_EVERY_S - time.monotonic()))
        # The webhook was in flight all along: every command met it.
        assert time.monotonic() - visit.accepted < deliveries.DEADLINE_S
        assert visit.left is None
        assert max(latencies) < COMMAND_WITHIN_S, [f"{s:.3f}" for s in latencies]

        def attempted() -> Any:
            with cloud.engine.connect() as connection:
                row = connection.execute(select(WEBHOOK_DELIVERIES)).one()
            return row if row.attempts == 1 else None

        row = eventually(attempted, timeout=deliveries.DEADLINE_S + 15)
        held = time.monotonic() - visit.accepted
    finally:
        fridge.close()
        drip.close()
    # Abandoned at the deadline (which started before the connection the receiver saw), not later.
    assert held <= deliveries.DEADLINE_S + 0.5, f"held {held:.2f} s"
    assert (row.status, row.last_status_code) == ("pending", None)
    assert row.last_error == f"no answer within the {deliveries.DEADLINE_S:g} s deadline"
    assert visit.sent < len(NO_CONTENT)
    wait = as_utc(row.next_attempt_at) - datetime.now(UTC)
    assert timedelta(0) < wait <= timedelta(seconds=deliveries.BACKOFF_S[0] * (1 + deliveries.JITTER))
