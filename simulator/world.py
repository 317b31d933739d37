"""Households living with real fridges on one virtual clock: days of life in seconds of wall time.

Each :class:`~simulator.life.Household` drives the real edge agent of its fridge (through the
scanner's grammar); the agents, and the cloud when it is given the same clock, read the time from
one :class:`~shared.clock.ManualClock` that jumps from one action to the next. The agents publish
through a real broker as in production; the world waits for their outboxes to drain at the end of
every day, so a run's events are all in the cloud when it returns.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from edge.agent import Agent, Sensors
from edge.consent import ConsentSettings
from edge.errors import NothingToDo, NotInFridge, ScanError
from edge.sensors.door import SimulatedDoor
from edge.sensors.thermometer import SimulatedThermometer
from edge.sensors.weight import SimulatedShelf
from edge.settings import EdgeSettings
from shared import topics
from shared.clock import Clock, ManualClock, OffsetClock
from shared.messages import CatalogUpdated, encode
from shared.mqtt import MqttSettings, create_client, release
from simulator.catalog import CATALOG, Product
from simulator.faults import Faults
from simulator.life import Action, ActionKind, DayTruth, Household, Shopping
from simulator.network import Link, Network
from simulator.retailer import Retailer, RetailerSettings, SimulatedRetailer, TellsFridges

log = logging.getLogger(__name__)

# Telemetry once every six virtual hours: a sample a minute would outnumber the events 100 to 1.
TELEMETRY_INTERVAL_S = 6 * 3600
DRAIN_TIMEOUT_S = 120.0
# The fridges' linger (EdgeSettings.linger_s): 0.15 s sent each virtual day in a few batches, and
# ran the 20-households fortnight about a tenth faster than the agent's 0.05 s.
SIM_LINGER_S = 0.15
# Wall seconds a fridge may take to hear of a delivery through the cloud before it is unpacked.
DELIVERY_NEWS_S = 10.0
# The door stays open this long after the last thing put in or taken out: actions closer together
# than this (a bag of shopping put away) are one opening.
DOOR_LINGER = timedelta(seconds=20)
# A fridge runs at 3.5-5 °C; with the door open its air warms by about 3 °C a minute, up to the room.
FRIDGE_CELSIUS = (3.5, 5.0)
WARMING_PER_S = 0.05
ROOM_CELSIUS = 21.0
# The weight shelf is the door's: bottles and tubs by the gram, where a fridge is opened most.
SHELF = "door"
# A pour: out of the fridge, used and back on the shelf within the agent's return window.
POUR_TIME = timedelta(seconds=40)
# What households let their fridge share: everything, or the default minimum.
DETAIL = frozenset({"inventory", "telemetry", "consumption_detail"})
MINIMAL = ConsentSettings().share
# Recent events kept per fridge for duplicate and out-of-order delivery.
RECENT_EVENTS = 20
# The most events an out-of-order fault sends again, shuffled.
OUT_OF_ORDER_SPAN = 6


class FaultKind(StrEnum):
    """The faults the world injects."""

    BROKER_RESTART = "broker_restart"
    POWER_LOSS = "power_loss"
    MALFORMED = "malformed"
    NETWORK_DROP = "network_drop"
    NETWORK_BACK = "network_back"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, due at ``at`` (virtual, naive UTC) on the world's ``fridge``-th fridge (from 0)."""

    at: datetime
    fridge: int
    kind: FaultKind


@dataclass(frozen=True, slots=True)
class _Noon:
    """Midday: the moment :attr:`World.on_noon` is called."""

    at: datetime


@dataclass(frozen=True, slots=True)
class _Doing:
    """A household's action, due on its fridge."""

    fridge: int
    action: Action

    @property
    def at(self) -> datetime:
        return self.action.at


def fridge_id(index: int) -> str:
    """Return the device id of the world's ``index``-th fridge (from 1)."""
    return f"home-{index:04d}"


@dataclass
class DayReport:
    """What one virtual day produced."""

    day: date
    actions: int
    events: int
    refused: int
    truths: list[DayTruth]
    faults: dict[str, int] = field(default_factory=dict)  # fault kind -> how many were injected


@dataclass
class WorldReport:
    """What a run produced, for the summary and the tests."""

    days: list[DayReport] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def events(self) -> int:
        """Return how many events the agents recorded."""
        return sum(d.events for d in self.days)

    @property
    def refused(self) -> int:
        """Return how many actions an agent refused (the model and the fridge disagreed)."""
        return sum(d.refused for d in self.days)


def _households(
    count: int, start: date, seed: int, retailer: Retailer | None, settings: RetailerSettings | None
) -> list[Household]:
    """Return the world's households, from ``start``, some shopping online at ``retailer``.

    Who shops online comes from a generator of its own too: the lives stay as they were.
    """
    online = random.Random(seed * 613)
    share = settings.online_share if settings is not None else 0.0
    return [
        Household(
            seed * 100_003 + i,
            start,
            name=fridge_id(i),
            shopping=Shopping.ONLINE if online.random() < share else Shopping.STORE,
            retailer=retailer,
        )
        for i in range(1, count + 1)
    ]


def _fridge_settings(
    mqtt: MqttSettings,
    data_dir: Path,
    links: Sequence[Link | None],
    faults: Faults,
    *,
    seed: int,
    detail_share: float,
) -> list[EdgeSettings]:
    """Return each fridge's agent settings, connected through its link (if the network is flaky)."""
    # Who lets the fridge share how food is used (partial amounts, openings): a generator of its own.
    sharing = random.Random(seed * 577)
    detail = [sharing.random() < detail_share for _ in links]
    return [
        EdgeSettings(
            device_id=fridge_id(i),
            data_dir=data_dir / fridge_id(i),
            mqtt=_through(mqtt, link),
            consent=ConsentSettings(share=DETAIL if detail[i - 1] else MINIMAL),
            telemetry_interval_s=TELEMETRY_INTERVAL_S,
            resend_after_s=faults.resend_after_s,
            # Power losses here stop the agent, not the machine: commits need no flush each.
            power_safe=False,
            # A virtual day passes in tens of milliseconds: a longer linger sends it in a batch.
            linger_s=SIM_LINGER_S,
        )
        for i, link in enumerate(links, start=1)
    ]


class World:
    """``households`` homes, each with its fridge's real agent, on ``clock``."""

    def __init__(
        self,
        households: int,
        mqtt: MqttSettings,
        data_dir: Path,
        clock: ManualClock,
        *,
        seed: int = 1,
        faults: Faults | None = None,
        restart_broker: Callable[[], None] | None = None,
        speed: float | None = None,
        retailer: RetailerSettings | None = None,
        retailer_client: Retailer | None = None,
        detail_share: float = 0.5,
        weight_shelf: bool = True,
    ) -> None:
        if households < 1:
            raise ValueError("a world needs at least one household")
        self.clock = clock
        self.faults = faults or Faults()
        if self.faults.broker_restarts_per_day and restart_broker is None:
            raise ValueError("broker restarts need a broker the world can restart")
        self._restart_broker = restart_broker
        # Faults draw from a generator of their own: turning them on leaves the households' lives,
        # and so the event stream, unchanged.
        self._fault_random = random.Random(seed * 7919)
        self._mqtt = mqtt
        start = clock.now().date()
        # The retailer in memory, unless one behind the order API is given.
        self.retailer: Retailer | None = retailer_client
        if self.retailer is None and retailer is not None:
            self.retailer = SimulatedRetailer(retailer, seed=seed)
        self.households = _households(households, start, seed, self.retailer, retailer)
        self._network = Network() if self.faults.network_drops_per_fridge_day else None
        self._links: list[Link | None] = [
            self._network.link(mqtt.host, mqtt.port) if self._network is not None else None
            for _ in range(households)
        ]
        self._settings = _fridge_settings(
            mqtt, data_dir, self._links, self.faults, seed=seed, detail_share=detail_share
        )
        self._clocks: list[Clock] = [self._skewed(clock) for _ in self._settings]
        sensors = random.Random(seed * 389)
        self.doors = [SimulatedDoor() for _ in self._settings]
        self._fridge_celsius = [sensors.uniform(*FRIDGE_CELSIUS) for _ in self._settings]
        self.thermometers = [SimulatedThermometer("fridge", c) for c in self._fridge_celsius]
        self.shelves = [SimulatedShelf(SHELF) for _ in self._settings]
        self._on_shelf: list[dict[int, float]] = [{} for _ in self._settings]  # pack -> grams
        self._sensors = [
            Sensors(door=door, thermometers=[probe], shelves=[shelf])
            for door, probe, shelf in zip(self.doors, self.thermometers, self.shelves, strict=True)
        ]
        # Without a weight shelf, no product is weighed: every pack is scanned out.
        self._products = {p.code: p for p in CATALOG} if weight_shelf else {}
        self.agents = [
            Agent(s, c, sensors)
            for s, c, sensors in zip(self._settings, self._clocks, self._sensors, strict=True)
        ]
        self._door_opened: list[datetime | None] = [None] * households  # when each open door opened
        self._door_closes: list[datetime | None] = [None] * households
        self._recent: list[deque[bytes]] = [deque(maxlen=RECENT_EVENTS) for _ in self._settings]
        # Encoding each event a second time is for the faults that replay them; without them, skip it.
        self._replays = bool(self.faults.duplicates_per_day or self.faults.out_of_order_per_day)
        self._day = start
        if speed is not None and speed <= 0:
            raise ValueError("the speed must be above 0 (virtual seconds per wall second)")
        self._speed = speed  # None: as fast as the machine goes
        self._pace_from: tuple[float, datetime] | None = None  # (wall, virtual) when pacing began
        # Called at noon of each virtual day, on the world's clock (the cloud's offer run, say).
        self.on_noon: Callable[[], None] | None = None

    def start(self) -> None:
        """Tell every fridge the catalog, as the cloud's catalog would, and connect it."""
        for agent in self.agents:
            catalog = CatalogUpdated(device_id=agent.device_id, products=tuple(p.info() for p in CATALOG))
            agent.handle_command(catalog)
            agent.start(poll=False)

    def stop(self) -> None:
        """Disconnect every fridge; what was not delivered stays in its outbox."""
        for agent in self.agents:
            agent.stop()
        if self._network is not None:
            self._network.close()
            self._network = None

    def run(self, days: int, on_day: Callable[[DayReport], None] | None = None) -> WorldReport:
        """Live ``days`` days; return what happened. Waits for the cloud at the end of each day."""
        report = WorldReport()
        started = time.monotonic()
        for _ in range(days):
            day = self._live_day()
            report.days.append(day)
            if on_day is not None:
                on_day(day)
        report.wall_seconds = time.monotonic() - started
        return report

    def wait_drained(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait until the cloud acknowledged every fridge's events."""
        deadline = time.monotonic() + timeout
        return all(agent.wait_drained(max(deadline - time.monotonic(), 0)) for agent in self.agents)

    def _skewed(self, clock: ManualClock) -> Clock:
        if not self.faults.clock_skew_s:
            return clock
        skew = self._fault_random.uniform(-self.faults.clock_skew_s, self.faults.clock_skew_s)
        return OffsetClock(clock, timedelta(seconds=skew))

    def _live_day(self) -> DayReport:
        day = self._day
        scheduled: list[_Doing | Fault | _Noon] = []
        truths = []
        for index, household in enumerate(self.households):
            actions, truth = household.live()
            truths.append(truth)
            scheduled += [_Doing(index, action) for action in actions]
        self._await_delivery_news()
        actions_count = len(scheduled)
        scheduled += self._faults_of(day)
        if self.on_noon is not None:
            scheduled.append(_Noon(datetime.combine(day, datetime.min.time()) + timedelta(hours=12)))
        scheduled.sort(key=lambda item: item.at)  # stable: the households' order within a moment stays
        report = DayReport(day, actions_count, 0, 0, truths)
        recorded_before = self._recorded()
        for item in scheduled:
            self._close_doors(until=item.at)
            self._advance_to(item.at.replace(tzinfo=UTC))
            if isinstance(item, _Noon):
                assert self.on_noon is not None
                self.on_noon()
                continue
            if isinstance(item, Fault):
                self._inject(item)
                report.faults[item.kind] = report.faults.get(item.kind, 0) + 1
                continue
            agent, action = self.agents[item.fridge], item.action
            product = self._products.get(action.code)
            on_shelf = product is not None and on_weight_shelf(product)  # never without a weight shelf
            shelved = on_shelf and action.pack in self._on_shelf[item.fridge]
            if action.kind is ActionKind.POUR or (shelved and action.kind is ActionKind.USE_UP):
                # Only the shelf sees these: a bottle emptied and taken away needs no scan.
                if shelved:
                    assert product is not None
                    self._open_door(item.fridge, item.at)
                    self._pour(item.fridge, product, action)
                continue
            self._open_door(item.fridge, item.at)
            try:
                events = agent.scan(action.line)
            except (ScanError, NotInFridge, NothingToDo) as exc:
                report.refused += 1
                log.warning("%s refused %r: %s", agent.device_id, action.line, exc)
                continue
            if self._replays:
                self._recent[item.fridge].extend(encode(event) for event in events)
            if on_shelf:
                assert product is not None
                self._shelve(item.fridge, product, action)
        self._day = day + timedelta(days=1)
        midnight = datetime.combine(self._day, datetime.min.time())
        self._close_doors(until=midnight)
        for link in self._links:
            if link is not None:
                link.mend()  # a drop heals by the end of its day: the day's events must arrive
        self._advance_to(midnight.replace(tzinfo=UTC))
        for agent in self.agents:
            agent.poll_once()  # rules and telemetry, once a virtual day
        # What the agents recorded, from their own counters: scans, and what sensors and rules saw.
        report.events = self._recorded() - recorded_before
        if not self.wait_drained():
            raise TimeoutError(f"the cloud did not acknowledge {day}'s events in {DRAIN_TIMEOUT_S:.0f} s")
        return report

    def _await_delivery_news(self) -> None:
        """Let each fridge hear of the day's deliveries before they are unpacked, as a real one would
        hours before the van comes; the cloud tells it within a dispatcher tick."""
        if not isinstance(self.retailer, TellsFridges):
            return
        by_device = {agent.device_id: agent for agent in self.agents}
        deadline = time.monotonic() + DELIVERY_NEWS_S
        for household, order_id in self.retailer.take_delivered():
            agent = by_device[household]
            while agent.order_status(order_id) != "delivered":
                if time.monotonic() > deadline:
                    log.warning("%s did not hear of order %s in %.0f s", household, order_id, DELIVERY_NEWS_S)
                    break
                time.sleep(0.02)

    def _recorded(self) -> int:
        return sum(agent.recorder.outbox.last_seq() for agent in self.agents)

    def _shelve(self, index: int, product: Product, action: Action) -> None:
        """Put a pack scanned in on the weight shelf, or take one used up or thrown away off it."""
        shelf, held = self.shelves[index], self._on_shelf[index]
        if action.kind is ActionKind.PUT_IN:
            held[action.pack] = _gross(product, 1.0)
            shelf.put(held[action.pack])
        elif action.kind in (ActionKind.USE_UP, ActionKind.DISCARD) and action.pack in held:
            shelf.take(held.pop(action.pack))
        else:
            return
        self.agents[index].poll_once()

    def _pour(self, index: int, product: Product, action: Action) -> None:
        """Take a pack off the shelf and use some: put it back, or away when it is empty.

        The agent weighs what was used, and a pack not put back as used up.
        """
        shelf, held, agent = self.shelves[index], self._on_shelf[index], self.agents[index]
        shelf.take(held[action.pack])
        agent.poll_once()
        if action.kind is ActionKind.USE_UP:
            del held[action.pack]
            return
        self._advance_to((self.clock.now() + POUR_TIME).replace(tzinfo=UTC))
        held[action.pack] = _gross(product, action.left)
        shelf.put(held[action.pack])
        agent.poll_once()

    def _open_door(self, index: int, at: datetime) -> None:
        """Open the fridge's door for an action, or keep it open a while longer."""
        self._door_closes[index] = at + DOOR_LINGER
        if self._door_opened[index] is None:
            # No poll now: the agent's poll at the closing sees the opening's effects, and a poll
            # per action was most of a simulated day's work.
            self._door_opened[index] = at
            self.doors[index].open()

    def _close_doors(self, until: datetime) -> None:
        """Close, in time order, the doors due to close by ``until``; the air warmed while open."""
        due = sorted(
            (closes, index) for index, closes in enumerate(self._door_closes) if closes and closes <= until
        )
        for closes, index in due:
            opened = self._door_opened[index]
            assert opened is not None
            limit = timedelta(seconds=self._settings[index].rules.door_open_limit_s)
            if closes - opened > limit:
                # Open longer than the agent allows (a big shop put away): let it see the door open.
                self._advance_to((opened + limit + timedelta(seconds=1)).replace(tzinfo=UTC))
                self.agents[index].poll_once()
            self._advance_to(closes.replace(tzinfo=UTC))
            celsius = self._fridge_celsius[index]
            warmed = min(celsius + WARMING_PER_S * (closes - opened).total_seconds(), ROOM_CELSIUS)
            self.thermometers[index].set(round(warmed, 2))
            self.doors[index].close()
            self.agents[index].poll_once()
            self.thermometers[index].set(round(celsius, 2))  # cold again by the next reading
            self._door_opened[index] = self._door_closes[index] = None

    def _faults_of(self, day: date) -> list[Fault]:
        """Return the day's faults, drawn from the faults' own generator."""
        rng, faults, count = self._fault_random, self.faults, len(self.agents)
        midnight = datetime.combine(day, datetime.min.time())
        drawn: list[Fault] = []

        def at_random() -> datetime:
            return midnight + timedelta(seconds=rng.uniform(0, 86_400))

        for kind, rate in (
            (FaultKind.BROKER_RESTART, faults.broker_restarts_per_day),
            (FaultKind.MALFORMED, faults.malformed_per_day),
            (FaultKind.DUPLICATE, faults.duplicates_per_day),
            (FaultKind.OUT_OF_ORDER, faults.out_of_order_per_day),
        ):
            drawn += [Fault(at_random(), rng.randrange(count), kind) for _ in range(_count(rng, rate))]
        for index in range(count):
            if rng.random() < faults.power_losses_per_fridge_day:
                drawn.append(Fault(at_random(), index, FaultKind.POWER_LOSS))
            for _ in range(_count(rng, faults.network_drops_per_fridge_day)):
                start = at_random()
                minutes = rng.expovariate(1 / faults.network_drop_minutes)
                end = min(start + timedelta(minutes=minutes), midnight + timedelta(days=1, seconds=-1))
                drawn.append(Fault(start, index, FaultKind.NETWORK_DROP))
                drawn.append(Fault(end, index, FaultKind.NETWORK_BACK))
        return drawn

    def _inject(self, fault: Fault) -> None:
        index = fault.fridge
        match fault.kind:
            case FaultKind.BROKER_RESTART:
                assert self._restart_broker is not None
                self._restart_broker()
            case FaultKind.POWER_LOSS:
                # The agent stops where it is and starts again from its database, like a fridge whose
                # plug was pulled: whatever the cloud had not acknowledged goes out again.
                self.agents[index].stop()
                self.agents[index] = Agent(self._settings[index], self._clocks[index], self._sensors[index])
                self.agents[index].start(poll=False)
            case FaultKind.MALFORMED:
                junk = self._fault_random.choice([b"{not json", b'{"type": "item_teleported"}', b"\xff\xfe"])
                self._publish_as(fridge_id(index + 1), [junk])
            case FaultKind.NETWORK_DROP:
                link = self._links[index]
                assert link is not None
                link.cut()
            case FaultKind.NETWORK_BACK:
                link = self._links[index]
                assert link is not None
                link.mend()
            case FaultKind.DUPLICATE:
                # A copy of something the fridge sent arrives again, as a resend after a lost ack does.
                if self._recent[index]:
                    self._publish_as(fridge_id(index + 1), [self._fault_random.choice(self._recent[index])])
            case FaultKind.OUT_OF_ORDER:
                # The fridge's latest events arrive again, shuffled, over a second path.
                recent = list(self._recent[index])[-OUT_OF_ORDER_SPAN:]
                self._fault_random.shuffle(recent)
                self._publish_as(fridge_id(index + 1), recent)

    def _publish_as(self, device_id: str, payloads: Sequence[bytes]) -> None:
        """Publish ``payloads`` on the fridge's event topic from a connection of the world's own."""
        if not payloads:
            return
        client, properties = create_client(self._mqtt, f"sim-fault-{device_id}", persistent=False)
        try:
            if self._mqtt.protocol == "5":
                client.connect(self._mqtt.host, self._mqtt.port, properties=properties)
            else:
                client.connect(self._mqtt.host, self._mqtt.port)
            client.loop_start()
            for payload in payloads:
                client.publish(topics.events(device_id), payload, qos=1).wait_for_publish(5)
        except (OSError, RuntimeError, ValueError) as exc:  # a broker restarting: the fault misses
            log.info("fault for %s not published: %s", device_id, exc)
        finally:
            client.disconnect()
            client.loop_stop()
            release(client)

    def _advance_to(self, moment: datetime) -> None:
        now = self.clock.now()
        if moment <= now:
            return
        if self._speed is not None:
            if self._pace_from is None:
                self._pace_from = (time.monotonic(), now)
            wall, virtual = self._pace_from
            due = wall + (moment - virtual).total_seconds() / self._speed
            time.sleep(max(due - time.monotonic(), 0.0))
        self.clock.advance(moment - now)


def on_weight_shelf(product: Product) -> bool:
    """Return whether the product stands on the weight shelf: a bottle or tub in the door."""
    return product.location == "door" and product.unit != "unit" and bool(product.unit_grams)


def _gross(product: Product, left: float) -> float:
    """Return what a pack weighs with ``left`` of its content: the packaging, and the rest."""
    assert product.unit_grams is not None
    content = min(product.pack_size, product.unit_grams)  # a millilitre weighs about a gram
    return round(product.unit_grams - content + left * content, 1)


def _through(mqtt: MqttSettings, link: Link | None) -> MqttSettings:
    """Return the broker settings of a fridge that reaches the broker through ``link``."""
    if link is None:
        return mqtt
    return mqtt.model_copy(update={"host": "127.0.0.1", "port": link.port})


def _count(rng: random.Random, rate: float) -> int:
    """Return how many of something happen on a day at ``rate`` a day on average."""
    whole = int(rate)
    return whole + (1 if rng.random() < rate - whole else 0)
