"""Erasure against the ids others keep their place by, on SQLite (migrated, as deployed) and
PostgreSQL: the rows stored after an erasure get ids never used before, a wipe is never marked
sent by a dispatcher that read, before the erasure, a command the erasure deleted, and the
household's webhooks go, found by equality, while a household with a similar name keeps its own."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlmodel import Session

from cloud.commerce import consents, orders, privacy
from cloud.commerce.catalog import upsert_catalog
from cloud.db import migrate
from cloud.db.engine import create_db_engine
from cloud.db.tables import (
    DEVICE_COMMANDS,
    EVENTS,
    HOUSEHOLDS,
    RETAILERS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
)
from cloud.identity import devices
from cloud.outbox import commands, deliveries
from shared.messages import CatalogUpdated, ProductInfo, decode_command

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STAYS, GOES = "fridge-stays", "fridge-goes"
MILK = ProductInfo(code="4006381333931", name="Milk 1 l")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_db_engine(database_url)
    migrate.upgrade(made)
    with Session(made) as session:
        devices.provision(session, STAYS)
        devices.provision(session, GOES)
        session.commit()
    yield made
    made.dispose()


def store_event(engine: Engine, device: str, seq: int) -> int:
    """Store one event of the device's household; return its id."""
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(EVENTS)
                .values(
                    event_id=uuid.uuid4(),
                    device_id=device,
                    seq=seq,
                    household_id=f"hh-{device}",
                    type="item_added",
                    code="4006381333931",
                    quantity_delta=1.0,
                    occurred_at=NOW,
                    received_at=NOW,
                    payload="{}",
                )
                .returning(EVENTS.c.id)
            ).scalar_one()
        )


def queue_command(engine: Engine, device: str) -> None:
    with engine.begin() as connection:
        commands.enqueue_for_household(
            connection, f"hh-{device}", lambda to: CatalogUpdated(device_id=to, products=(MILK,)), NOW
        )


def test_rows_stored_after_an_erasure_get_ids_never_used_before(engine: Engine) -> None:
    store_event(engine, STAYS, 1)
    queue_command(engine, STAYS)
    newest = max(store_event(engine, GOES, seq) for seq in (1, 2, 3))
    queue_command(engine, GOES)
    with engine.connect() as connection:
        newest_command = connection.execute(select(func.max(DEVICE_COMMANDS.c.id))).scalar_one()
    with engine.begin() as connection:
        privacy.erase(connection, f"hh-{GOES}", NOW)
    # The next event (the cursor of cloud/commerce/answers.py is past the erased ones) and command.
    assert store_event(engine, STAYS, 2) > newest
    queue_command(engine, STAYS)
    with engine.connect() as connection:
        ids = connection.execute(
            select(DEVICE_COMMANDS.c.id).where(DEVICE_COMMANDS.c.id > newest_command)
        ).scalars()
        assert len(list(ids)) == 2  # the erased fridge's wipe and the new command


def test_a_command_read_before_an_erasure_does_not_mark_the_wipe_sent(engine: Engine) -> None:
    queue_command(engine, GOES)
    with engine.connect() as connection:
        read = commands.pending(connection)  # a dispatcher's pass, publishing these...
    with engine.begin() as connection:
        privacy.erase(connection, f"hh-{GOES}", NOW)  # ...when the household is erased
    with engine.begin() as connection:
        commands.mark_sent(connection, [command_id for command_id, _device, _payload in read], NOW)
    with engine.connect() as connection:
        (wipe,) = commands.pending(connection)
    assert wipe[1] == GOES
    assert decode_command(wipe[2].encode()).type == "wipe_requested"


def add_shop(engine: Engine, retailer: str) -> None:
    """A retailer that sells milk and has a webhook endpoint."""
    milk = {
        "gtin": MILK.code,
        "name": MILK.name,
        "price": 1.19,
        "currency": "EUR",
        "pack_size": 1,
        "unit": "ml",
    }
    with engine.begin() as connection:
        connection.execute(insert(RETAILERS).values(id=retailer, name=retailer, created_at=NOW))
        upsert_catalog(connection, retailer, [milk], NOW)
        connection.execute(
            insert(WEBHOOK_ENDPOINTS).values(
                id=str(uuid.uuid4()),
                retailer_id=retailer,
                url="https://shop.example/hook",
                secret="s",
                created_at=NOW,
            )
        )


def place_order(engine: Engine, household: str, retailer: str) -> str:
    """Make the household a customer of the retailer and place an order; return the order's id."""
    with engine.begin() as connection:
        connection.execute(
            insert(HOUSEHOLDS).values(id=household, name=household, created_at=NOW, retailer_id=retailer)
        )
        consents.grant(connection, household, retailer, "ordering", NOW)
        return orders.create_order(connection, household, [orders.Wanted(MILK.code, 1)], NOW)


def owners(engine: Engine) -> Counter[tuple[str | None, str | None]]:
    """Count the webhook deliveries by the household and the order they name."""
    with engine.connect() as connection:
        table = WEBHOOK_DELIVERIES.c
        return Counter(
            (row.household_id, row.order_id)
            for row in connection.execute(select(table.household_id, table.order_id))
        )


def test_an_erasure_deletes_the_households_webhooks_and_no_one_elses(engine: Engine) -> None:
    # Matched in the payload with LIKE '%hh-a_b%', hh-aXb's webhooks went too ("_" is any character),
    # and with '%hh-kitchen%', hh-kitchen-2's.
    add_shop(engine, "shop-erasure")
    households = ("hh-a_b", "hh-aXb", "hh-kitchen", "hh-kitchen-2")
    placed = {household: place_order(engine, household, "shop-erasure") for household in households}
    with engine.begin() as connection:
        for household, order in placed.items():
            orders.cancel(connection, household, order, NOW)  # a second webhook for each
    assert owners(engine) == Counter(dict.fromkeys(placed.items(), 2))

    with engine.begin() as connection:
        privacy.erase(connection, "hh-a_b", NOW)
        privacy.erase(connection, "hh-kitchen", NOW)
    assert owners(engine) == Counter(
        {("hh-aXb", placed["hh-aXb"]): 2, ("hh-kitchen-2", placed["hh-kitchen-2"]): 2}
    )


def test_an_erasure_deletes_a_webhook_that_names_only_one_of_the_households_orders(engine: Engine) -> None:
    add_shop(engine, "shop-orders")
    order = place_order(engine, "hh-orders", "shop-orders")
    with engine.begin() as connection:
        deliveries.enqueue(
            connection, "shop-orders", "order.created", {}, NOW, household_id=None, order_id=order
        )
    assert owners(engine) == Counter({("hh-orders", order): 1, (None, order): 1})
    with engine.begin() as connection:
        privacy.erase(connection, "hh-orders", NOW)
    assert owners(engine) == Counter()
