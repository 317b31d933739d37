"""Run a scenario end to end: broker, cloud, households on real fridges, and a report folder.

Without a broker given, the run starts its own: Mosquitto when it is installed (persistent, so
that it can be restarted as a fault), else the embedded amqtt broker; and a cloud worker on SQLite
in the report folder. The cloud
reads the same virtual clock as the fridges, so what it stores is stamped in virtual time.

The report folder holds ``summary.json`` (the run's figures), ``truth.csv`` (one row per day,
household and product: eaten, bought, wasted, wanted but missing, stock at the end of the day),
``orders.csv`` (one row per line ordered from the retailer and what came of it) and ``plots/``
(PNGs of stock, stockouts, waste, orders and offers: see :mod:`simulator.plots`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select

from shared.clock import ManualClock
from shared.mqtt import MqttSettings
from simulator.apiretailer import ApiRetailer
from simulator.catalog import CATALOG
from simulator.errors import ScenarioError
from simulator.life import DayTruth
from simulator.mosquitto import Mosquitto, free_port, mosquitto_binary
from simulator.plots import FORECAST_COLUMNS, ORDER_COLUMNS, TRUTH_COLUMNS, write_plots
from simulator.retailer import Order, OrderStatus
from simulator.scenario import Scenario
from simulator.world import DayReport, World, WorldReport, fridge_id

# Wall seconds a fridge may take to hear of an offer, or a retailer of an order, through the cloud.
OFFER_NEWS_S = 10.0

if TYPE_CHECKING:
    from cloud.service import CloudService

log = logging.getLogger(__name__)

# The fridges whose stock the report forecasts day by day and draws: a few, as each costs a planning
# run a day.
FORECAST_HOUSEHOLDS = 4
BAND_Z = 1.2816


def run_scenario(
    scenario: Scenario,
    report_dir: Path,
    *,
    mqtt: MqttSettings | None = None,
    database_url: str | None = None,
    restart_broker: Callable[[], None] | None = None,
    speed: float | None = None,
    on_day: Callable[[DayReport], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario``; write its report to ``report_dir``; return the summary.

    Without ``mqtt``, the run has a broker of its own: Mosquitto if installed, else the embedded
    one (which cannot be restarted). With ``mqtt``, broker restarts need ``restart_broker``.
    """
    from cloud.db.tables import EVENTS

    if scenario.load is not None:
        raise ScenarioError(f"scenario {scenario.name} is a load scenario: run it with run_load_scenario")
    if (report_dir / "cloud.db").exists() or (report_dir / "fridges").exists():
        raise ScenarioError(f"{report_dir} holds an earlier run: remove it, or choose another report folder")
    report_dir.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(datetime.combine(scenario.start, datetime.min.time(), UTC))
    with ExitStack() as stack:
        if mqtt is None:
            mqtt, restart_broker = _own_broker(stack, report_dir)
        if scenario.faults.broker_restarts_per_day and restart_broker is None:
            raise ScenarioError(
                f"scenario {scenario.name} restarts the broker: run it on the broker the simulator "
                "starts (no --mqtt-host/--mqtt-port), with Mosquitto installed (apt-get install mosquitto)"
            )
        through_api = scenario.retailer is not None and scenario.retailer.through_api
        database_url = database_url or f"sqlite:///{report_dir / 'cloud.db'}"
        cloud = _start_cloud(stack, scenario, mqtt, database_url, clock, through_api=through_api)
        shop = None
        account = _shop_account(cloud, scenario, clock) if through_api or scenario.offers else None
        if through_api:
            assert account is not None
            shop = _start_shop(stack, cloud, scenario, clock, account)
        world = World(
            scenario.households,
            mqtt,
            report_dir / "fridges",
            clock,
            seed=scenario.seed,
            faults=scenario.faults,
            restart_broker=restart_broker,
            speed=speed,
            retailer=scenario.retailer,
            retailer_client=shop,
            detail_share=scenario.consumption_detail_share,
            weight_shelf=scenario.weight_shelf,
        )
        stack.callback(world.stop)
        tally = None
        if scenario.offers is not None:
            assert account is not None
            tally = _offer_to(cloud, world, scenario, account[0])
        world.start()
        watched = [fridge_id(i) for i in range(1, min(scenario.households, FORECAST_HOUSEHOLDS) + 1)]
        report = _live_days(world, scenario.days, cloud.engine, clock, watched, report_dir, on_day)
        if shop is not None:
            _await_webhooks(cloud)
        with cloud.engine.connect() as connection:
            stored = int(connection.execute(select(func.count()).select_from(EVENTS)).scalar_one())
            through = _through_api(connection, shop) if shop is not None else None
    orders = world.retailer.orders if world.retailer is not None else []
    summary = _summary(scenario, report, stored, orders)
    if through is not None:
        summary["retailer"]["through_api"] = through
    if tally is not None:
        summary["offers"] = tally.summary()
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_truth(report_dir / "truth.csv", report)
    write_orders(report_dir / "orders.csv", orders)
    write_plots(report_dir, devices=watched)
    return summary


def _start_cloud(
    stack: ExitStack,
    scenario: Scenario,
    mqtt: MqttSettings,
    database_url: str,
    clock: ManualClock,
    *,
    through_api: bool,
) -> CloudService:
    """Start the run's cloud worker on ``clock``, stopped when ``stack`` closes; wait for its broker."""
    from cloud.service import CloudService
    from cloud.settings import CloudSettings

    cloud = CloudService(
        CloudSettings(
            database_url=database_url,
            mqtt=mqtt,
            client_id=f"frigo-sim-cloud-{scenario.name}",
            auto_enroll=True,  # the simulated fridges are not provisioned: they enrol with their first event
            # The fridges' small batches cost more to hand to a child process than to store here.
            writer_process=False,
            planning=False,  # the simulator's households shop for themselves
            http_port=0,
            # The simulated retailer's webhook receiver listens on loopback.
            webhook_allow_private=through_api,
        ),
        clock,
        serve_http=through_api,
    )
    stack.callback(cloud.stop)
    cloud.start()
    if not cloud.subscriber.wait_connected(15):
        raise TimeoutError(f"the cloud could not connect to the broker at {mqtt.host}:{mqtt.port}")
    return cloud


def _start_shop(
    stack: ExitStack, cloud: CloudService, scenario: Scenario, clock: ManualClock, account: tuple[str, str]
) -> ApiRetailer:
    """Start the retailer that works through the order API, chosen by every household."""
    shop = _api_retailer(cloud, scenario, clock, account)
    stack.callback(shop.stop)
    shop.start()
    for index in range(1, scenario.households + 1):
        shop.choose_me(fridge_id(index))
    return shop


def _live_days(
    world: World,
    days: int,
    engine: Engine,
    clock: ManualClock,
    watched: Sequence[str],
    report_dir: Path,
    on_day: Callable[[DayReport], None] | None,
) -> WorldReport:
    """Run the world for ``days``, writing the cloud's forecast of the watched fridges to forecast.csv."""
    with (report_dir / "forecast.csv").open("w", newline="", encoding="utf-8") as file:
        forecasts = csv.writer(file)
        forecasts.writerow(FORECAST_COLUMNS)

        def day_done(day: DayReport) -> None:
            # The cloud's forecast, from what the fridges sent, of the watched fridges' stock tomorrow.
            forecasts.writerows(_forecast_rows(engine, watched, clock.now()))
            if on_day is not None:
                on_day(day)

        return world.run(days, day_done)


@dataclass
class OfferTally:
    """The offers the simulated households got, and what they answered."""

    strategy: str
    sent: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, taken: bool) -> None:
        """Count one offer of ``kind`` and its answer."""
        self.sent[kind] += 1
        self.accepted[kind] += taken

    def summary(self) -> dict[str, Any]:
        """Return the figures of the run's summary.json."""
        sent, accepted = sum(self.sent.values()), sum(self.accepted.values())
        return {
            "strategy": self.strategy,
            "sent": sent,
            "accepted": accepted,
            "acceptance_rate": round(accepted / sent, 4) if sent else None,
            "by_kind": {
                kind: {"sent": n, "accepted": self.accepted[kind]} for kind, n in sorted(self.sent.items())
            },
        }


def _shop_account(cloud: CloudService, scenario: Scenario, clock: ManualClock) -> tuple[str, str]:
    """Make the run's retailer account and its households in the cloud; return (retailer id, key)."""
    from sqlmodel import Session

    from cloud.identity.devices import provision
    from cloud.identity.retailers import create_retailer

    with Session(cloud.engine) as session:
        retailer, key = create_retailer(session, f"Simulated shop {scenario.name}", clock.now())
        session.commit()
        retailer_id = retailer.id
        # The households exist before their fridges' first events, so they can order on day one.
        for index in range(1, scenario.households + 1):
            provision(session, fridge_id(index), clock=clock)
    return retailer_id, key


def _api_retailer(
    cloud: CloudService, scenario: Scenario, clock: ManualClock, account: tuple[str, str]
) -> ApiRetailer:
    """Return the retailer that works through the order API, on the run's shop account."""
    from sqlmodel import Session

    from cloud.identity.devices import household_id_for
    from cloud.identity.tokens import issue_token

    assert scenario.retailer is not None
    retailer_id, key = account

    def token(household_id: str) -> str:
        with Session(cloud.engine) as session:
            issued = issue_token(session, "household", household_id, clock.now())
            session.commit()
        return issued

    return ApiRetailer(
        cloud.url, key, retailer_id, token, household_id_for, clock, scenario.retailer, seed=scenario.seed
    )


def _offer_to(cloud: CloudService, world: World, scenario: Scenario, retailer_id: str) -> OfferTally:
    """Let the households allow the shop's offers (as the scenario says), and answer its offers at
    noon each day, as the people would: return the tally the run fills."""
    import random
    import uuid

    from cloud.commerce import consents
    from cloud.commerce.catalog import upsert_catalog
    from cloud.commerce.offers import run_offers
    from cloud.db.tables import OFFERS
    from cloud.identity.devices import household_id_for
    from simulator.apiretailer import catalog_items

    settings = scenario.offers
    assert settings is not None
    clock = world.clock
    items = catalog_items(CATALOG)
    choosing = random.Random(scenario.seed * 337)
    answering = random.Random(scenario.seed * 911)
    with cloud.engine.begin() as connection:
        upsert_catalog(connection, retailer_id, items, clock.now())
        for household in world.households:
            if choosing.random() < settings.consent_share:
                for purpose in ("offers", "analytics"):
                    consents.grant(
                        connection, household_id_for(household.name), retailer_id, purpose, clock.now()
                    )
    tally = OfferTally(settings.strategy)
    agents = {agent.device_id: agent for agent in world.agents}
    homes = {household.name: household for household in world.households}

    def noon() -> None:
        run = run_offers(cloud.engine, clock, weekly_cap=settings.weekly_cap, strategy=settings.strategy)
        if not run.offers:
            return
        with cloud.engine.connect() as connection:
            made = connection.execute(
                select(OFFERS.c.id, OFFERS.c.household_id, OFFERS.c.gtin, OFFERS.c.kind).where(
                    OFFERS.c.created_at == clock.now()
                )
            ).all()
        for offer_id, household_id, code, kind in made:
            device = str(household_id).removeprefix("hh-")
            agent = agents[device]
            deadline = time.monotonic() + OFFER_NEWS_S
            while agent.recorder.offers.get(uuid.UUID(offer_id)) is None:  # the fridge hears of it
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{device} did not get offer {offer_id} in {OFFER_NEWS_S:.0f} s")
                time.sleep(0.02)
            taken = homes[device].takes_offer(str(code), answering.random())
            agent.answer_offer(uuid.UUID(offer_id), "accepted" if taken else "dismissed")
            tally.add(str(kind), taken)

    world.on_noon = noon
    return tally


def _await_webhooks(cloud: CloudService) -> None:
    """Wait until the last day's webhooks are sent (the dispatcher sends within a tick)."""
    from cloud.db.tables import WEBHOOK_DELIVERIES

    deadline = time.monotonic() + OFFER_NEWS_S
    while time.monotonic() < deadline:
        with cloud.engine.connect() as connection:
            pending = connection.execute(
                select(func.count())
                .select_from(WEBHOOK_DELIVERIES)
                .where(WEBHOOK_DELIVERIES.c.status == "pending")
            ).scalar_one()
        if not pending:
            return
        time.sleep(0.05)


def _through_api(connection: Connection, shop: ApiRetailer) -> dict[str, Any]:
    """Return what went through the order API: orders by status, webhooks, packs matched on fridges."""
    from cloud.db.tables import EVENTS, ORDER_LINES, ORDERS, WEBHOOK_DELIVERIES

    statuses = connection.execute(select(ORDERS.c.status, func.count()).group_by(ORDERS.c.status)).all()
    webhooks = connection.execute(
        select(WEBHOOK_DELIVERIES.c.status, func.count()).group_by(WEBHOOK_DELIVERIES.c.status)
    ).all()
    delivered = connection.execute(
        select(func.coalesce(func.sum(ORDER_LINES.c.delivered_quantity), 0))
    ).scalar_one()
    matched = 0
    for payload in connection.execute(
        select(EVENTS.c.payload).where(EVENTS.c.type == "item_added")
    ).scalars():
        matched += json.loads(payload).get("order_id") is not None
    return {
        "orders": {str(status): int(count) for status, count in statuses},
        "webhooks_sent": {str(status): int(count) for status, count in webhooks},
        "webhooks_received": shop.webhooks_received,
        "webhooks_refused": shop.webhooks_refused,
        "webhooks_missed": shop.webhooks_missed,
        "packs_delivered": int(delivered),
        "packs_matched_on_fridges": matched,
    }


def _forecast_rows(engine: Engine, devices: Sequence[str], now: datetime) -> list[list[object]]:
    """Return forecast.csv's rows: each watched fridge's stock at the end of the coming day, in packs."""
    from cloud.planning.planner import plan_households

    with engine.connect() as connection:
        plans = plan_households(connection, [f"hh-{device}" for device in devices], now)
    day = now.date().isoformat()
    rows: list[list[object]] = []
    for device, household in zip(devices, plans, strict=True):
        for item in household.items:
            p50 = max((item.stock - item.rate) / item.pack, 0.0)
            band = BAND_Z * item.sd / item.pack  # the 10th to 90th percentile of a day's use
            rows.append(
                [day, device, item.code, round(p50, 4), round(max(p50 - band, 0), 4), round(p50 + band, 4)]
            )
    return rows


def run_load_scenario(scenario: Scenario, report_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Run a load scenario's swarm; write its figures to ``report_dir/summary.json``; return them."""
    from simulator.load.run import run_load

    if scenario.load is None:
        raise ScenarioError(f"scenario {scenario.name} has no [load] table: run it with run_scenario")
    if (report_dir / "summary.json").exists():
        raise ScenarioError(f"{report_dir} holds an earlier run: remove it, or choose another report folder")
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = {"scenario": scenario.model_dump(mode="json"), **run_load(scenario.load, progress=progress)}
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _own_broker(stack: ExitStack, report_dir: Path) -> tuple[MqttSettings, Callable[[], None] | None]:
    """Start a broker for the run: Mosquitto if installed (it can be restarted), else the embedded one."""
    binary = mosquitto_binary()
    if binary is not None:
        folder = report_dir / "mosquitto"
        folder.mkdir(exist_ok=True)
        # Persistent, as in production: the cloud's session outlives a restart.
        mosquitto = Mosquitto(binary, folder, persistence=True, max_queued_messages=1_000_000)
        mosquitto.start()
        stack.callback(mosquitto.stop)
        return mosquitto.mqtt(), mosquitto.restart
    from cloud.mqtt.broker import EmbeddedBroker

    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    stack.callback(broker.stop)
    return MqttSettings(host="127.0.0.1", port=broker.port, protocol="3.1.1"), None


def _summary(scenario: Scenario, report: WorldReport, stored: int, orders: Sequence[Order]) -> dict[str, Any]:
    households = []
    for index in range(scenario.households):
        truths = [day.truths[index] for day in report.days]
        households.append(
            {
                "device_id": fridge_id(index + 1),
                "packs_bought": sum(sum(t.bought.values()) for t in truths),
                "packs_eaten": round(sum(sum(t.eaten.values()) for t in truths), 2),
                "packs_wasted": sum(sum(t.wasted.values()) for t in truths),
                "packs_missing": round(sum(sum(t.wanted_missing.values()) for t in truths), 2),
                "days_away": sum(t.away for t in truths),
                "shopping_trips": sum(t.shopping for t in truths),
                "packs_ordered": sum(sum(t.ordered.values()) for t in truths),
            }
        )
    lines = [line for order in orders for line in order.lines]
    delivered = [line for order in orders for line in order.delivered]
    return {
        "scenario": scenario.model_dump(mode="json"),
        "wall_seconds": round(report.wall_seconds, 2),
        "actions": sum(d.actions for d in report.days),
        "events_recorded": report.events,
        "events_stored": stored,
        "actions_refused": report.refused,
        "faults": dict(sum((Counter(d.faults) for d in report.days), Counter())),
        "retailer": {
            "orders": len(orders),
            "delivered": sum(o.status is OrderStatus.DELIVERED for o in orders),
            "failed": sum(o.status is OrderStatus.FAILED for o in orders),
            "pending": sum(o.status is OrderStatus.PENDING for o in orders),
            "lines": len(lines),
            "lines_substituted": sum(line.substituted for line in delivered),
            "lines_out_of_stock": sum(
                len(o.lines) - len(o.delivered) for o in orders if o.status is OrderStatus.DELIVERED
            ),
        },
        "households": households,
    }


def write_orders(path: Path, orders: Sequence[Order]) -> None:
    """Write one row per ordered line: what came of it, and what came instead if substituted."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(ORDER_COLUMNS)
        for order in orders:
            came = {line.ordered: line for line in order.delivered}
            for line in order.lines:
                got = came.get(line.code)
                status = order.status.value
                if order.status is OrderStatus.DELIVERED and got is None:
                    status = "out_of_stock"
                writer.writerow(
                    [
                        order.order_id,
                        order.household,
                        order.placed.date().isoformat(),
                        order.due.date().isoformat(),
                        order.due.date().isoformat() if got is not None else "",
                        status,
                        line.code,
                        line.quantity,
                        got.code if got is not None and got.substituted else "",
                    ]
                )


def _write_truth(path: Path, report: WorldReport) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(TRUTH_COLUMNS)
        for day in report.days:
            for index, truth in enumerate(day.truths):
                writer.writerows(truth_rows(fridge_id(index + 1), truth))


def truth_rows(device_id: str, truth: DayTruth) -> list[list[object]]:
    """Return ``truth.csv``'s rows for one household's day: one per product with anything to say."""
    codes = truth.eaten.keys() | truth.bought.keys() | truth.wasted.keys() | truth.stock.keys()
    return [
        [
            truth.day.isoformat(),
            device_id,
            code,
            round(truth.eaten.get(code, 0.0), 4),
            truth.bought.get(code, 0),
            truth.wasted.get(code, 0),
            round(truth.wanted_missing.get(code, 0.0), 4),
            round(truth.stock.get(code, 0.0), 4),
        ]
        for code in sorted(codes | truth.wanted_missing.keys())
    ]
