"""The planner on stored events: forecasts, one basket per household and cycle, workers sharing
the households on PostgreSQL, and the forecast and shopping-list routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select, update

from cloud.commerce.baskets import PlanningRun, plan_cycle
from cloud.db.engine import create_db_engine
from cloud.db.tables import HOUSEHOLDS, PLANNED_ORDER_LINES, PLANNED_ORDERS
from cloud.planning.planner import plan_households
from cloud.scheduler import PlanningSchedule
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.clock import ManualClock
from shared.messages import ItemAdded, ItemConsumed, encode
from shared.mqtt import MqttSettings
from tests.support.auth import bearer
from tests.support.factories import event_id
from tests.support.services import free_port

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
DAYS = 40
NOW = START + timedelta(days=DAYS - 1, hours=14)  # the afternoon of the last day
MILK, CHEESE = "2000000000251", "2000000000404"
INTERVAL_S = 900.0


def history(device: str, *, milk_left: float) -> list[tuple[str, bytes]]:
    """Forty days of a household: a litre of milk every four days, 250 ml a day; cheese untouched."""
    events: list[ItemAdded | ItemConsumed] = []

    def ids() -> dict[str, object]:
        n = len(events) + 1
        return {"event_id": event_id(device, n), "device_id": device, "seq": n, "lot_id": n}

    for day in range(DAYS):
        at = START + timedelta(days=day)
        if day % 4 == 0:
            bb = at.date() + timedelta(days=10)
            events.append(
                ItemAdded(**ids(), occurred_at=at, code=MILK, quantity=1000, unit="ml", best_before=bb)
            )
        # The last day's use leaves only ``milk_left`` ml of the last litre.
        used = 250 - milk_left if day == DAYS - 1 else 250
        if used > 0:
            noon = at + timedelta(hours=12)
            events.append(ItemConsumed(**ids(), occurred_at=noon, code=MILK, quantity=used, unit="ml"))
    bb = START.date() + timedelta(days=90)
    events.append(ItemAdded(**ids(), occurred_at=START, code=CHEESE, quantity=1, best_before=bb))
    return [(topics.events(device), encode(event)) for event in events]


@pytest.fixture
def service(database_url: str) -> Iterator[CloudService]:
    settings = CloudSettings(
        database_url=database_url,
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        client_id="planner-test",
        auto_enroll=True,
        planning=False,
    )
    cloud = CloudService(settings, ManualClock(NOW), serve_http=False)
    cloud.ingestor.process(history("fridge-low", milk_left=100) + history("fridge-full", milk_left=250))
    try:
        yield cloud
    finally:
        cloud.stop()


def test_a_household_whose_milk_runs_low_gets_it_in_its_basket(service: CloudService) -> None:
    with service.engine.connect() as connection:
        low, full = plan_households(connection, ["hh-fridge-low", "hh-fridge-full"], NOW)

    milk = next(item for item in low.items if item.code == MILK)
    assert milk.unit == "ml"
    assert milk.pack == 1000
    assert milk.rate == pytest.approx(250, rel=0.1)
    assert milk.stock == pytest.approx(100)
    assert milk.days_left[0] < milk.days_left[1] < milk.days_left[2]
    assert milk.days_left[1] == pytest.approx(0.4, abs=0.3)
    assert milk.packs >= 2  # a week's milk, at least
    assert "runs out" in milk.reason or "has run out" in milk.reason
    cheese = next(item for item in low.items if item.code == CHEESE)
    assert cheese.packs == 0  # a whole cheese, hardly used: nothing to order
    assert [i.code for i in low.basket] == [MILK]
    assert full.items  # planned too


def test_planning_a_cycle_twice_makes_one_order_per_household(service: CloudService) -> None:
    clock = ManualClock(NOW)
    first = plan_cycle(service.engine, clock, INTERVAL_S)
    again = plan_cycle(service.engine, clock, INTERVAL_S)
    # Even a household marked for planning again keeps its cycle's one order.
    with service.engine.begin() as connection:
        connection.execute(update(HOUSEHOLDS).values(planned_cycle=-1))
    forced = plan_cycle(service.engine, clock, INTERVAL_S)

    assert first.households == 2
    assert first.orders == 2
    assert again.households == 0
    assert forced.households == 2
    assert forced.orders == 0
    with service.engine.connect() as connection:
        orders = connection.execute(select(PLANNED_ORDERS.c.household_id, PLANNED_ORDERS.c.status)).all()
        lines = connection.execute(select(func.count()).select_from(PLANNED_ORDER_LINES)).scalar_one()
    assert sorted(orders) == [("hh-fridge-full", "proposed"), ("hh-fridge-low", "proposed")]
    assert lines >= 2

    clock.advance(timedelta(seconds=INTERVAL_S))
    assert plan_cycle(service.engine, clock, INTERVAL_S).orders == 0  # the milk is on its way
    clock.advance(timedelta(days=4))  # and, as far as the planner knows, arrived and gone
    assert plan_cycle(service.engine, clock, INTERVAL_S).orders == 2


def test_the_household_mode_decides_what_a_basket_becomes(service: CloudService) -> None:
    with service.engine.begin() as connection:
        for household, mode in (("hh-fridge-low", "automatic"), ("hh-fridge-full", "suggest")):
            connection.execute(
                update(HOUSEHOLDS).where(HOUSEHOLDS.c.id == household).values(planning_mode=mode)
            )
    plan_cycle(service.engine, ManualClock(NOW), INTERVAL_S)
    with service.engine.connect() as connection:
        orders = PLANNED_ORDERS.c
        rows = connection.execute(select(orders.household_id, orders.status, orders.cancellable_until)).all()
    by_household = {h: (s, c) for h, s, c in rows}
    status, cancellable = by_household["hh-fridge-low"]
    assert status == "approved"
    assert cancellable is not None
    assert by_household["hh-fridge-full"] == ("suggested", None)


@pytest.mark.postgres
def test_two_workers_at_once_on_postgres_make_one_order_per_household() -> None:
    from tests.support.services import postgres_database

    with postgres_database() as url:
        settings = CloudSettings(
            database_url=url,
            mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
            planning=False,
            auto_enroll=True,
        )
        cloud = CloudService(settings, ManualClock(NOW), serve_http=False)
        engines = [create_db_engine(url) for _ in range(2)]
        runs: list[PlanningRun] = []
        try:
            messages = []
            for n in range(40):
                messages += history(f"fridge-{n:02d}", milk_left=100)
            cloud.ingestor.process(messages)
            barrier = threading.Barrier(2)

            def work(engine: Engine) -> None:
                barrier.wait()  # both claim at once: the leases must keep them apart
                runs.append(plan_cycle(engine, ManualClock(NOW), INTERVAL_S, batch=5))

            threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            with cloud.engine.connect() as connection:
                household = PLANNED_ORDERS.c.household_id
                per_household = connection.execute(select(household, func.count()).group_by(household)).all()
        finally:
            for engine in engines:
                engine.dispose()
            cloud.stop()
    assert len(runs) == 2
    assert sum(run.households for run in runs) == 40  # each household planned by one worker
    assert all(run.households > 0 for run in runs)  # and both workers took a share
    assert len(per_household) == 40
    assert all(count == 1 for _household, count in per_household)


def test_the_forecast_and_shopping_list_routes(tmp_path: Path) -> None:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),  # no broker: the API is what counts
        http_port=0,
        client_id="planner-api-test",
        auto_enroll=True,
        planning=False,
    )
    cloud = CloudService(settings, ManualClock(NOW))
    cloud.ingestor.process(history("fridge-low", milk_left=100))
    cloud.start()
    try:
        with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
            forecast = client.get("/households/hh-fridge-low/forecast")
            computed = client.get("/households/hh-fridge-low/shopping-list")
            plan_cycle(cloud.engine, ManualClock(NOW), INTERVAL_S)
            stored = client.get("/households/hh-fridge-low/shopping-list")
            missing = client.get("/households/nobody/forecast")
    finally:
        cloud.stop()

    assert forecast.status_code == 200
    items = {item["code"]: item for item in forecast.json()["items"]}
    milk = items[MILK]
    assert milk["unit"] == "ml"
    assert milk["order_packs"] >= 2
    days = milk["days_until_empty"]
    assert days["p10"] <= days["p50"] <= days["p90"]
    assert date.fromisoformat(milk["reorder_date"]) == NOW.date()
    assert milk["reason"]
    assert computed.json()["order_id"] is None
    assert [line["code"] for line in computed.json()["lines"]] == [MILK]
    assert stored.json()["status"] == "proposed"
    assert stored.json()["lines"] == computed.json()["lines"]
    assert missing.status_code == 404


def test_the_schedule_runs_a_cycle_every_interval_and_sooner_when_asked(service: CloudService) -> None:
    schedule = PlanningSchedule(service.engine, ManualClock(NOW), interval_s=3600)
    schedule.start()
    try:
        first = schedule.next_run
        assert first is not None
        assert first > datetime.now(UTC) + timedelta(minutes=59)  # an interval from now
        schedule.run_soon(0.1)
        deadline = time.monotonic() + 10
        while schedule.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        schedule.stop()
    assert schedule.last is not None
    assert schedule.last.orders == 2
    with pytest.raises(ValueError, match="interval"):
        PlanningSchedule(service.engine, ManualClock(NOW), interval_s=0)


def test_a_household_whose_stock_falls_after_the_cycles_run_is_planned_again(tmp_path: Path) -> None:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        planning=False,
        auto_enroll=True,
    )
    cloud = CloudService(settings, ManualClock(NOW), serve_http=False)
    stocked = history("fridge-x", milk_left=100)
    extra = ItemAdded(
        event_id=event_id("fridge-x", 900), device_id="fridge-x", seq=900, lot_id=900,
        occurred_at=NOW - timedelta(hours=1), code=MILK, quantity=3000, unit="ml",
    )  # fmt: skip
    cloud.ingestor.process([*stocked, (topics.events("fridge-x"), encode(extra))])
    schedule = PlanningSchedule(cloud.engine, ManualClock(NOW), INTERVAL_S)
    try:
        before = schedule.run_once()
        spilt = ItemConsumed(
            event_id=event_id("fridge-x", 901), device_id="fridge-x", seq=901, lot_id=900,
            occurred_at=NOW - timedelta(minutes=5), code=MILK, quantity=3000, unit="ml",
        )  # fmt: skip
        cloud.ingestor.process([(topics.events("fridge-x"), encode(spilt))])
        schedule.note_events("fridge-x")
        after = schedule.run_once()
        again = schedule.run_once()  # nothing new: no second order in the cycle
    finally:
        cloud.stop()
    assert before.households == 1
    assert before.orders == 0  # three litres in the fridge: nothing to order
    assert after.households == 1
    assert after.orders == 1  # the same cycle, planned again once the milk was gone
    assert again.households == 0


def test_a_household_approves_or_cancels_its_baskets_through_the_api(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
        http_port=0,
        client_id="planner-orders-test",
        auto_enroll=True,
        planning=False,
    )
    cloud = CloudService(settings, clock)
    cloud.ingestor.process(history("fridge-low", milk_left=100))
    cloud.start()
    base = "/households/hh-fridge-low"
    try:
        with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
            plan_cycle(cloud.engine, clock, INTERVAL_S)
            (proposed,) = client.get(f"{base}/planned-orders").json()
            approved = client.post(f"{base}/planned-orders/{proposed['id']}/approve")
            twice = client.post(f"{base}/planned-orders/{proposed['id']}/approve")
            late_cancel = client.post(f"{base}/planned-orders/{proposed['id']}/cancel")
            unknown = client.post(f"{base}/planned-orders/no-such-order/cancel")
            other = client.post(f"/households/nobody/planned-orders/{proposed['id']}/cancel")

            mode = client.put(f"{base}/planning", json={"mode": "automatic"})
            bad_mode = client.put(f"{base}/planning", json={"mode": "sometimes"})
            clock.advance(timedelta(days=4))  # the first basket no longer counts as on its way
            plan_cycle(cloud.engine, clock, INTERVAL_S)
            automatic = client.get(f"{base}/planned-orders").json()[0]
            clock.advance(timedelta(hours=23))
            cancelled = client.post(f"{base}/planned-orders/{automatic['id']}/cancel")
    finally:
        cloud.stop()

    assert proposed["status"] == "proposed"
    assert [line["code"] for line in proposed["lines"]] == [MILK]
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    assert twice.status_code == 409
    assert "is approved" in twice.json()["detail"]
    assert late_cancel.status_code == 409  # approved by the household: the retailer has it
    assert unknown.status_code == 404
    assert other.status_code == 404
    assert mode.json() == {"household_id": "hh-fridge-low", "mode": "automatic"}
    assert bad_mode.status_code == 422
    assert automatic["status"] == "approved"
    assert automatic["cancellable_until"] is not None
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


def test_a_household_with_a_retailer_gets_its_packs_and_prices_and_automatic_baskets_are_ordered(
    service: CloudService,
) -> None:
    from sqlmodel import Session

    from cloud.commerce.catalog import upsert_catalog
    from cloud.commerce.consents import grant
    from cloud.db.tables import ORDER_LINES, ORDERS
    from cloud.identity.retailers import create_retailer

    with Session(service.engine) as session:
        retailer, _key = create_retailer(session, "Dairy Direct", NOW)
        session.commit()
        retailer_id = retailer.id
    with service.engine.begin() as connection:
        # Milk in two-litre packs at 2.10; the cheese is not sold.
        upsert_catalog(
            connection,
            retailer_id,
            [
                {
                    "gtin": MILK,
                    "name": "Milk 2 l",
                    "price": 2.10,
                    "currency": "EUR",
                    "pack_size": 2000,
                    "unit": "ml",
                    "available": True,
                }
            ],
            NOW,
        )
        connection.execute(
            update(HOUSEHOLDS)
            .where(HOUSEHOLDS.c.id == "hh-fridge-low")
            .values(retailer_id=retailer_id, planning_mode="automatic")
        )
        grant(connection, "hh-fridge-low", retailer_id, "ordering", NOW - timedelta(days=1))
    with service.engine.connect() as connection:
        low, full = plan_households(connection, ["hh-fridge-low", "hh-fridge-full"], NOW)
    milk = next(item for item in low.items if item.code == MILK)
    own = next(item for item in full.items if item.code == MILK)
    # A week's milk and more is 2 l packs for the household with the retailer, litres for the other.
    assert milk.retail_pack == 2000
    assert milk.packs >= 1
    assert milk.quantity == milk.packs * 2000
    assert own.retail_pack == own.pack == 1000
    assert abs(milk.quantity - max(own.quantity, milk.quantity)) < 2000  # the same need, rounded up

    clock = ManualClock(NOW)
    assert plan_cycle(service.engine, clock, INTERVAL_S).orders >= 1
    with service.engine.connect() as connection:
        (order,) = connection.execute(select(ORDERS).where(ORDERS.c.household_id == "hh-fridge-low")).all()
        lines = connection.execute(select(ORDER_LINES).where(ORDER_LINES.c.order_id == order.id)).all()
    assert order.status == "created"
    assert order.planned_order_id is not None
    assert [(line.gtin, line.quantity) for line in lines] == [(MILK, milk.packs)]
    assert order.total == pytest.approx(2.10 * milk.packs)

    # A week later, as far as the planner knows, the order is still on its way: nothing more.
    clock.advance(timedelta(days=5))
    with service.engine.connect() as connection:
        (later,) = plan_households(connection, ["hh-fridge-low"], clock.now())
    assert next(item for item in later.items if item.code == MILK).packs == 0
    # Once delivered, it no longer counts as coming.
    with service.engine.begin() as connection:
        connection.execute(update(ORDERS).where(ORDERS.c.id == order.id).values(status="delivered"))
    with service.engine.connect() as connection:
        (after,) = plan_households(connection, ["hh-fridge-low"], clock.now())
    assert next(item for item in after.items if item.code == MILK).packs >= 1
