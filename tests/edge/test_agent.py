"""The Agent without a broker: sensors polled by hand on a ManualClock, commands and configuration.

Agents here are never started: no MQTT connection, no threads. ``poll_once`` is what the sensor
thread would call; ``handle_command`` and ``apply_config`` are what the MQTT thread would call.
The one exception connects to a Mosquitto broker, to see the connection flag `frigo edge status`
reads. A restart is a stop and a new Agent on the same data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from edge.agent import Agent, Sensors, read_status
from edge.consent import ALL_CATEGORIES, ConsentSettings
from edge.errors import NothingToDo, NotInFridge, ScanError, SensorError
from edge.sensors import SimulatedDoor, SimulatedShelf, SimulatedThermometer
from edge.settings import EdgeSettings, RulesSettings
from shared.clock import ManualClock
from shared.messages import (
    AlertCleared,
    AlertRaised,
    CatalogUpdated,
    ConfigApplied,
    ConfigDesired,
    DataWiped,
    Event,
    ItemAdded,
    ItemConsumed,
    ItemOpened,
    OfferAnswered,
    OfferSent,
    OrderLine,
    OrderUpdated,
    ProductInfo,
    TelemetryReported,
    WipeRequested,
    decode_event,
)
from shared.mqtt import MqttSettings
from tests.support.services import Mosquitto, free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEVICE = "fridge-1"
MILK = "4006381333931"
EGGS = "96385074"
MUSTARD = "036000291452"
PEAS = "2000000000015"
ORDER = UUID("0e2b1c4a-5d6f-4a8b-9c0d-1e2f3a4b5c6d")
OFFER = UUID("11111111-2222-4333-8444-555555555555")
WIPE = UUID("dddddddd-eeee-4fff-8000-111111111111")
CATALOG = CatalogUpdated(
    device_id=DEVICE,
    products=(
        ProductInfo(code=MILK, name="Milk 1 l", unit_grams=1000, shelf_life_days=5, opened_shelf_life_days=3),
        ProductInfo(code=EGGS, name="Eggs", shelf_life_days=20),
        ProductInfo(code=MUSTARD, name="Mustard", perishable=False),
    ),
)


class AgentFactory:
    """Build agents on one data directory; every agent not stopped by its test is stopped at the end."""

    def __init__(self, data_dir: Path, clock: ManualClock) -> None:
        self._data_dir = data_dir
        self._clock = clock
        self.running: list[Agent] = []

    def __call__(self, sensors: Sensors | None = None, **settings: Any) -> Agent:
        settings.setdefault("mqtt", MqttSettings(port=free_port()))  # nothing listens there
        return self._run(EdgeSettings(device_id=DEVICE, data_dir=self._data_dir, **settings), sensors)

    def stop(self, agent: Agent) -> None:
        agent.stop()  # works without start()
        self.running.remove(agent)

    def restart(self, agent: Agent, sensors: Sensors | None = None) -> Agent:
        """Stop ``agent`` and run a new one on the same settings and database, as after a reboot."""
        self.stop(agent)
        return self._run(agent.settings, sensors)

    def _run(self, settings: EdgeSettings, sensors: Sensors | None) -> Agent:
        agent = Agent(settings, clock=self._clock, sensors=sensors)
        self.running.append(agent)
        return agent


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def make_agent(tmp_path: Path, clock: ManualClock) -> Iterator[AgentFactory]:
    """Build agents on tmp_path that are never started; each still running is stopped at the end."""
    factory = AgentFactory(tmp_path, clock)
    yield factory
    for agent in factory.running:
        agent.stop()


def outbox(agent: Agent) -> list[Event]:
    return [decode_event(payload) for _, payload in agent.recorder.outbox.pending(after=0, limit=100_000)]


def new_events(agent: Agent, after: int) -> list[Event]:
    return [decode_event(payload) for _, payload in agent.recorder.outbox.pending(after=after, limit=100_000)]


def step(agent: Agent, clock: ManualClock, seconds: float) -> list[Event]:
    """Let ``seconds`` pass, poll once, and return the events that poll recorded."""
    last = agent.recorder.outbox.last_seq()
    clock.advance(timedelta(seconds=seconds))
    agent.poll_once()
    return new_events(agent, last)


class BrokenProbe:
    """A thermometer whose wire came loose."""

    sensor_id = "freezer"

    def read_celsius(self) -> float:
        raise SensorError("probe freezer cannot be read: check its wiring")


# scanning ---------------------------------------------------------------------------------------


def test_scan_returns_the_events_it_recorded(make_agent: AgentFactory) -> None:
    agent = make_agent()
    assert agent.device_id == DEVICE
    assert not agent.uplink.connected
    assert agent.scan("   ") == []
    assert agent.scan("# comment") == []
    (added,) = agent.scan(f"+{MILK}")
    assert isinstance(added, ItemAdded)
    assert (added.device_id, added.seq, added.lot_id, added.occurred_at) == (DEVICE, 1, 1, T0)
    assert agent.quantity(MILK) == 1.0
    with pytest.raises(NothingToDo, match=f"^every lot of {MILK} is in the fridge$"):
        agent.scan(f"move {MILK} fridge")
    (used,) = agent.scan(f"-{MILK}")
    assert isinstance(used, ItemConsumed)
    assert (used.seq, used.lot_id, used.source) == (2, 1, "scan")
    assert agent.quantity(MILK) == 0.0
    assert agent.inventory() == {}
    with pytest.raises(NotInFridge):
        agent.scan(f"-{MILK}")
    with pytest.raises(ScanError):
        agent.scan("++1")
    assert agent.outbox_depth() == 2
    assert outbox(agent) == [added, used]
    assert agent.settings.db_path == agent.settings.data_dir / "edge.db"
    assert agent.settings.db_path.is_file()


# the door ---------------------------------------------------------------------------------------------


def test_door_left_open_raises_and_clears_an_alert(make_agent: AgentFactory, clock: ManualClock) -> None:
    door = SimulatedDoor()
    agent = make_agent(Sensors(door=door))
    assert step(agent, clock, 0) == []
    door.open()
    assert step(agent, clock, 10) == []  # opened at T0 + 10 s
    assert step(agent, clock, 60) == []
    assert step(agent, clock, 60) == []  # open for exactly the limit, 2 min: not yet
    (raised,) = step(agent, clock, 10)
    assert isinstance(raised, AlertRaised)
    detail = "The door has been open for 2 min: close it to keep food cold"
    assert (raised.kind, raised.subject, raised.detail, raised.since, raised.perishable_codes) == (
        "door_open",
        "door",
        detail,
        T0 + timedelta(seconds=10),
        (),
    )
    assert read_status(agent.settings).alerts == [
        ("door_open", "door", detail, (T0 + timedelta(seconds=10)).isoformat())
    ]
    assert step(agent, clock, 60) == []  # raised once per episode

    door.close()
    (cleared,) = step(agent, clock, 10)
    assert isinstance(cleared, AlertCleared)
    assert (cleared.kind, cleared.subject) == ("door_open", "door")
    assert read_status(agent.settings).alerts == []


# temperature ------------------------------------------------------------------------------------------


def test_a_warm_fridge_for_half_an_hour_names_the_perishable_food(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    probe = SimulatedThermometer("fridge", 4.0)
    agent = make_agent(Sensors(thermometers=[probe, BrokenProbe()]))
    agent.handle_command(CATALOG)
    for code in (MILK, EGGS, MUSTARD):
        agent.scan(f"+{code}")
    last = agent.recorder.outbox.last_seq()
    step(agent, clock, 0)
    probe.set(9.5)
    step(agent, clock, 30)  # warm from T0 + 30 s
    for _ in range(59):
        step(agent, clock, 30)
    assert new_events(agent, last) == []  # 29 min 30 s above 8 °C
    (raised,) = step(agent, clock, 30)
    assert isinstance(raised, AlertRaised)
    assert (raised.kind, raised.subject, raised.since, raised.perishable_codes) == (
        "temperature_high",
        "probe:fridge",
        T0 + timedelta(seconds=30),
        (MILK, EGGS),
    )
    assert raised.detail == "Fridge at 9.5 °C for 30 min: perishable food may be unsafe: Milk 1 l, Eggs"
    assert [a[:2] for a in read_status(agent.settings).alerts] == [("temperature_high", "probe:fridge")]

    probe.set(8.0)  # at the limit is not above it
    (cleared,) = step(agent, clock, 30)
    assert isinstance(cleared, AlertCleared)
    assert (cleared.kind, cleared.subject) == ("temperature_high", "probe:fridge")


def test_a_short_warm_spell_raises_nothing(make_agent: AgentFactory, clock: ManualClock) -> None:
    probe = SimulatedThermometer("fridge", 12.0)
    agent = make_agent(Sensors(thermometers=[probe]))
    for _ in range(50):
        step(agent, clock, 30)  # 25 min
    probe.set(5.0)
    step(agent, clock, 30)
    probe.set(12.0)
    for _ in range(50):
        step(agent, clock, 30)  # the episode starts again
    assert outbox(agent) == []


# expiry -----------------------------------------------------------------------------------------------


def test_expiring_then_expired(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent()
    agent.handle_command(CATALOG)
    (added,) = agent.scan(f"+{MILK}")  # best before 2024-05-06
    assert isinstance(added, ItemAdded)
    assert added.best_before == date(2024, 5, 6)
    assert step(agent, clock, 0) == []
    assert step(agent, clock, 2 * 86400) == []  # 2024-05-03: three days left

    (expiring,) = step(agent, clock, 86400)  # 2024-05-04
    assert isinstance(expiring, AlertRaised)
    assert (expiring.kind, expiring.subject, expiring.since, expiring.detail) == (
        "expiring",
        "lot:1",
        datetime(2024, 5, 4, tzinfo=UTC),
        "Milk 1 l (lot 1) is best before 2024-05-06: use it soon",
    )
    assert read_status(agent.settings).alerts == [
        ("expiring", "lot:1", expiring.detail, "2024-05-04T00:00:00+00:00")
    ]
    assert step(agent, clock, 86400) == []  # still expiring on the 5th

    cleared, expired = step(agent, clock, 2 * 86400)  # 2024-05-07
    assert isinstance(cleared, AlertCleared)
    assert (cleared.kind, cleared.subject) == ("expiring", "lot:1")
    assert isinstance(expired, AlertRaised)
    assert (expired.kind, expired.subject, expired.since, expired.detail) == (
        "expired",
        "lot:1",
        datetime(2024, 5, 7, tzinfo=UTC),
        "Milk 1 l (lot 1) is past its best-before date 2024-05-06",
    )
    assert [a[:2] for a in read_status(agent.settings).alerts] == [("expired", "lot:1")]

    agent.scan(f"discard {MILK} expired")
    last = agent.recorder.outbox.last_seq()
    (gone,) = step(agent, clock, 10)
    assert isinstance(gone, AlertCleared)
    assert (gone.seq, gone.kind, gone.subject) == (last + 1, "expired", "lot:1")
    assert read_status(agent.settings).alerts == []


def test_rules_run_every_ten_seconds(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(Sensors(door=SimulatedDoor(is_open=True)))
    assert step(agent, clock, 0) == []  # open since T0
    for _ in range(12):
        assert step(agent, clock, 10) == []  # up to 120 s: open for the limit, not longer
    assert step(agent, clock, 5) == []  # open too long, but the rules ran 5 s ago...
    assert step(agent, clock, 4) == []
    assert [e.type for e in step(agent, clock, 1)] == ["alert_raised"]  # ...and run again at 130 s


# alerts across a restart ------------------------------------------------------------------------------


def expiring_milk(make_agent: AgentFactory, clock: ManualClock) -> tuple[Agent, AlertRaised]:
    """An agent whose milk (lot 1, best before 2024-05-06) has had an expiring alert since 2024-05-04."""
    agent = make_agent()
    agent.handle_command(CATALOG)
    agent.scan(f"+{MILK}")
    assert step(agent, clock, 0) == []
    (raised,) = step(agent, clock, 3 * 86400)  # 2024-05-04 12:00
    assert isinstance(raised, AlertRaised)
    assert (raised.seq, raised.kind, raised.subject) == (2, "expiring", "lot:1")
    return agent, raised


def alert_events(agent: Agent) -> list[tuple[str, str, str]]:
    return [(e.type, e.kind, e.subject) for e in outbox(agent) if isinstance(e, AlertRaised | AlertCleared)]


def test_an_alert_that_ended_while_stopped_is_cleared_once_after_the_restart(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    agent, raised = expiring_milk(make_agent, clock)
    agent = make_agent.restart(agent)
    assert read_status(agent.settings).alerts == [
        ("expiring", "lot:1", raised.detail, "2024-05-04T00:00:00+00:00")
    ]
    (used,) = agent.scan(f"-{MILK}")  # used up before the restarted agent's first evaluation
    assert used.seq == 3
    (cleared,) = step(agent, clock, 10)
    assert isinstance(cleared, AlertCleared)
    assert (cleared.seq, cleared.kind, cleared.subject) == (4, "expiring", "lot:1")
    assert read_status(agent.settings).alerts == []
    assert step(agent, clock, 10) == []
    assert step(agent, clock, 86400) == []
    assert alert_events(agent) == [
        ("alert_raised", "expiring", "lot:1"),
        ("alert_cleared", "expiring", "lot:1"),
    ]


def test_a_door_alert_open_across_a_restart_neither_flaps_nor_lingers(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    door = SimulatedDoor()
    agent = make_agent(Sensors(door=door))
    door.open()
    assert step(agent, clock, 0) == []
    (raised,) = step(agent, clock, 130)
    assert isinstance(raised, AlertRaised)
    assert raised.subject == "door"
    agent = make_agent.restart(agent, Sensors(door=door))
    # Still open: the restarted rules need two minutes to see it, the stored alert stays meanwhile.
    for _ in range(20):
        assert step(agent, clock, 10) == []
    assert read_status(agent.settings).alerts[0][:2] == ("door_open", "door")
    door.close()
    (cleared,) = step(agent, clock, 10)
    assert isinstance(cleared, AlertCleared)
    assert cleared.subject == "door"
    assert alert_events(agent) == [
        ("alert_raised", "door_open", "door"),
        ("alert_cleared", "door_open", "door"),
    ]


def test_a_door_alert_inherited_at_restart_clears_when_the_door_is_found_closed(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    door = SimulatedDoor()
    agent = make_agent(Sensors(door=door))
    door.open()
    step(agent, clock, 0)
    step(agent, clock, 130)
    door.close()  # closed while the agent was down
    agent = make_agent.restart(agent, Sensors(door=door))
    (cleared,) = step(agent, clock, 10)
    assert isinstance(cleared, AlertCleared)
    assert cleared.subject == "door"
    assert read_status(agent.settings).alerts == []


def test_an_alert_that_still_holds_after_a_restart_is_not_raised_again(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    agent, raised = expiring_milk(make_agent, clock)
    agent = make_agent.restart(agent)
    assert step(agent, clock, 10) == []
    assert step(agent, clock, 86400) == []  # 2024-05-05: still expiring
    assert read_status(agent.settings).alerts == [
        ("expiring", "lot:1", raised.detail, "2024-05-04T00:00:00+00:00")
    ]
    # The restarted rules go on from the stored alert: on 2024-05-07 it becomes an expired one.
    cleared, expired = step(agent, clock, 2 * 86400)
    assert isinstance(cleared, AlertCleared)
    assert (cleared.seq, cleared.kind, cleared.subject) == (3, "expiring", "lot:1")
    assert isinstance(expired, AlertRaised)
    assert (expired.seq, expired.kind, expired.subject) == (4, "expired", "lot:1")
    assert alert_events(agent) == [
        ("alert_raised", "expiring", "lot:1"),
        ("alert_cleared", "expiring", "lot:1"),
        ("alert_raised", "expired", "lot:1"),
    ]
    assert [a[:2] for a in read_status(agent.settings).alerts] == [("expired", "lot:1")]


def test_an_alert_that_began_while_stopped_is_raised_once_after_the_restart(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    agent = make_agent()
    agent.handle_command(CATALOG)
    agent.scan(f"+{MILK}")
    assert step(agent, clock, 0) == []
    assert step(agent, clock, 2 * 86400) == []  # 2024-05-03: three days left
    agent = make_agent.restart(agent)
    (raised,) = step(agent, clock, 86400)  # 2024-05-04
    assert isinstance(raised, AlertRaised)
    assert (raised.seq, raised.kind, raised.subject, raised.since) == (
        2,
        "expiring",
        "lot:1",
        datetime(2024, 5, 4, tzinfo=UTC),
    )
    assert step(agent, clock, 10) == []
    assert [a[:2] for a in read_status(agent.settings).alerts] == [("expiring", "lot:1")]


# telemetry --------------------------------------------------------------------------------------------


def samples(agent: Agent) -> list[TelemetryReported]:
    return [TelemetryReported.model_validate_json(p) for _, p in agent.recorder.telemetry.pending(1000)]


def test_telemetry_samples_every_interval(make_agent: AgentFactory, clock: ManualClock) -> None:
    door = SimulatedDoor()
    probe = SimulatedThermometer("fridge", 4.5)
    agent = make_agent(Sensors(door=door, thermometers=[probe]), telemetry_interval_s=60)
    agent.scan(f"+{MILK}")
    step(agent, clock, 0)
    step(agent, clock, 30)
    probe.set(5.5)
    door.open()
    step(agent, clock, 29)
    step(agent, clock, 1)  # 60 s
    step(agent, clock, 59)
    step(agent, clock, 61)  # 180 s: late, but one sample
    kept = samples(agent)
    assert [(s.occurred_at, s.uptime_s) for s in kept] == [
        (T0, 0.0),
        (T0 + timedelta(seconds=60), 60.0),
        (T0 + timedelta(seconds=180), 180.0),
    ]
    assert [s.device_id for s in kept] == [DEVICE] * 3
    assert [s.temperatures_c for s in kept] == [{"fridge": 4.5}, {"fridge": 5.5}, {"fridge": 5.5}]
    assert [s.door_open for s in kept] == [False, True, True]
    assert agent.outbox_depth() == 2  # the scan and the door alert at 179 s: samples are not events


def test_telemetry_reports_the_events_waiting(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(telemetry_interval_s=60)
    agent.scan(f"+{MILK}")
    for _ in range(3):
        step(agent, clock, 60)
    # Events only: neither the samples waiting beside them nor acknowledged gaps in the seq span.
    assert [s.outbox_depth for s in samples(agent)] == [1, 1, 1]
    agent.scan(f"+{EGGS}")
    agent.scan(f"+{EGGS}")
    agent.recorder.outbox.acknowledge([(2, 2)])
    step(agent, clock, 60)
    assert agent.recorder.outbox.span() == 3
    assert [s.outbox_depth for s in samples(agent)] == [1, 1, 1, 2]


def test_telemetry_without_sensors_has_no_readings(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(telemetry_interval_s=5)
    for _ in range(3):
        step(agent, clock, 5)
    assert [(s.uptime_s, s.temperatures_c, s.door_open) for s in samples(agent)] == [
        (5.0, {}, None),
        (10.0, {}, None),
        (15.0, {}, None),
    ]


# weight shelves -----------------------------------------------------------------------------------------


def shelve_milk(agent: Agent, shelf: SimulatedShelf, clock: ManualClock) -> None:
    """Learn the milk's weight, scan it in and set it on the shelf."""
    agent.handle_command(CATALOG)
    step(agent, clock, 0)  # the shelf's empty load
    agent.scan(f"+{MILK}")
    shelf.put(1000)
    step(agent, clock, 5)


def test_weight_use_with_consumption_detail(make_agent: AgentFactory, clock: ManualClock) -> None:
    shelf = SimulatedShelf("middle")
    agent = make_agent(Sensors(shelves=[shelf]), consent=ConsentSettings(share=ALL_CATEGORIES))
    shelve_milk(agent, shelf, clock)
    shelf.take(1000)
    assert step(agent, clock, 5) == []
    shelf.put(750)  # put back lighter, within the return window
    (used,) = step(agent, clock, 60)
    assert isinstance(used, ItemConsumed)
    assert (used.code, used.lot_id, used.quantity, used.unit, used.source) == (
        MILK,
        1,
        0.25,
        "unit",
        "weight",
    )
    assert used.occurred_at == T0 + timedelta(seconds=70)
    assert agent.quantity(MILK) == 0.75

    # Taken out again and not put back within five minutes: the rest was used.
    shelf.take(750)
    assert step(agent, clock, 5) == []
    assert step(agent, clock, 300) == []
    (rest,) = step(agent, clock, 1)
    assert isinstance(rest, ItemConsumed)
    assert (rest.lot_id, rest.quantity, rest.source) == (1, 0.75, "weight")
    assert agent.inventory() == {}


def test_a_pour_the_shelf_cannot_tell_apart_goes_to_the_bottle_opened(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    juice = "2000000000022"
    shelf = SimulatedShelf("door")
    agent = make_agent(Sensors(shelves=[shelf]), consent=ConsentSettings(share=ALL_CATEGORIES))
    shelve_milk(agent, shelf, clock)
    agent.handle_command(
        CatalogUpdated(
            device_id=DEVICE,
            products=(ProductInfo(code=juice, name="Juice 1 l", unit_grams=1000, opened_shelf_life_days=5),),
        )
    )
    agent.scan(f"+{juice}")
    shelf.put(1000)  # as heavy as the milk beside it, which has stood there longer
    step(agent, clock, 5)
    agent.scan(f"open {juice}")
    shelf.take(1000)
    step(agent, clock, 5)
    shelf.put(700)
    (used,) = step(agent, clock, 60)
    assert isinstance(used, ItemConsumed)
    assert (used.code, used.lot_id, used.quantity) == (juice, 2, 0.3)
    assert (agent.quantity(MILK), agent.quantity(juice)) == (1.0, 0.7)


def test_weight_use_is_withheld_without_consumption_detail(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    shelf = SimulatedShelf("middle")
    agent = make_agent(Sensors(shelves=[shelf]))
    shelve_milk(agent, shelf, clock)
    shelf.take(1000)
    step(agent, clock, 5)
    shelf.put(750)
    assert step(agent, clock, 60) == []
    assert agent.quantity(MILK) == 0.75
    shelf.take(750)
    step(agent, clock, 5)
    step(agent, clock, 301)
    assert agent.inventory() == {}
    (finished,) = [e for e in outbox(agent) if isinstance(e, ItemConsumed)]
    assert (finished.lot_id, finished.quantity, finished.source) == (1, 1.0, "weight")
    assert finished.occurred_at == datetime(2024, 5, 1, tzinfo=UTC)


def test_weight_use_of_a_product_without_unit_weight_is_not_guessed(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    shelf = SimulatedShelf("middle")
    agent = make_agent(Sensors(shelves=[shelf]), consent=ConsentSettings(share=ALL_CATEGORIES))
    step(agent, clock, 0)
    agent.scan(f"+{EGGS}")  # unknown weight: takes any increase nothing else explains
    shelf.put(600)
    step(agent, clock, 5)
    shelf.take(600)
    step(agent, clock, 5)
    shelf.put(300)
    assert step(agent, clock, 5) == []
    assert agent.quantity(EGGS) == 1.0


# commands ----------------------------------------------------------------------------------------------


def test_catalog_updates_name_products_and_date_new_lots(make_agent: AgentFactory) -> None:
    agent = make_agent()
    agent.scan(f"+{MILK}")
    assert read_status(agent.settings).unknown_codes == [MILK]
    agent.handle_command(CATALOG)
    (added,) = agent.scan(f"+{MILK}")
    assert isinstance(added, ItemAdded)
    assert added.best_before == date(2024, 5, 6)
    status = read_status(agent.settings)
    assert status.unknown_codes == []
    # In consumption order: the dated lot first.
    assert [(lot.id, label) for lot, label in status.lots] == [(2, "Milk 1 l"), (1, "Milk 1 l")]


def test_wipe_requested_wipes(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(Sensors(thermometers=[SimulatedThermometer("fridge", 4.0)]))
    agent.handle_command(CATALOG)
    agent.handle_command(
        OrderUpdated(
            order_id=ORDER, device_id=DEVICE, status="dispatched", lines=(OrderLine(code=EGGS, quantity=6),)
        )
    )
    agent.scan(f"+{MILK}")
    agent.scan(f"+{EGGS}")
    step(agent, clock, 0)
    agent.recorder.outbox.acknowledge([(1, 1)])

    agent.handle_command(WipeRequested(device_id=DEVICE, request_id=WIPE))
    (wiped,) = outbox(agent)
    assert isinstance(wiped, DataWiped)
    assert (wiped.seq, wiped.request_id, wiped.discarded) == (3, WIPE, ((2, 2),))
    assert agent.inventory() == {}
    status = read_status(agent.settings)
    assert (status.lots, status.expected, status.unknown_codes, status.outbox_depth) == ([], [], [], 1)
    assert agent.recorder.telemetry.depth() == 0
    (after,) = agent.scan(f"+{MILK}")
    assert isinstance(after, ItemAdded)
    assert (after.seq, after.best_before) == (4, None)  # the catalog went too
    # Readings from before the wipe are not reported again.
    step(agent, clock, 60)
    assert [s.temperatures_c for s in samples(agent)] == [{"fridge": 4.0}]


def test_offers_are_kept_and_answered(make_agent: AgentFactory) -> None:
    agent = make_agent()
    far = datetime(2999, 1, 1, tzinfo=UTC)  # read_status compares with the system clock
    agent.handle_command(
        OfferSent(
            offer_id=OFFER,
            device_id=DEVICE,
            title="Milk -20%",
            body="",
            explanation="You buy milk every week.",
            expires_at=far,
        )
    )
    agent.handle_command(
        OfferSent(
            offer_id=WIPE,
            device_id=DEVICE,
            title="Old",
            body="",
            explanation="Expired already.",
            expires_at=T0,
        )
    )
    assert read_status(agent.settings).offers == 1
    agent.answer_offer(OFFER, "accepted")
    (answered,) = outbox(agent)
    assert isinstance(answered, OfferAnswered)
    assert (answered.offer_id, answered.answer) == (OFFER, "accepted")
    with pytest.raises(LookupError, match="no offer"):
        agent.answer_offer(ORDER, "accepted")
    assert agent.outbox_depth() == 1


def test_orders_reconcile_deliveries(make_agent: AgentFactory) -> None:
    agent = make_agent()
    agent.handle_command(
        OrderUpdated(
            order_id=ORDER, device_id=DEVICE, status="dispatched", lines=(OrderLine(code=EGGS, quantity=2),)
        )
    )
    assert read_status(agent.settings).expected == [(str(ORDER), EGGS, 2, 0)]
    (added,) = agent.scan(f"+{EGGS}")
    assert isinstance(added, ItemAdded)
    assert added.order_id == ORDER
    assert read_status(agent.settings).expected == [(str(ORDER), EGGS, 2, 1)]


# desired configuration -----------------------------------------------------------------------------------


def config(version: int, **settings: Any) -> ConfigDesired:
    return ConfigDesired(device_id=DEVICE, version=version, settings=settings)


def test_config_applied_once_per_version(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(telemetry_interval_s=10)
    step(agent, clock, 0)
    assert len(samples(agent)) == 1

    agent.apply_config(config(1, consent={"share": ["inventory"]}))
    (applied,) = outbox(agent)
    assert isinstance(applied, ConfigApplied)
    assert (applied.seq, applied.version, applied.status, applied.error) == (1, 1, "applied", None)
    assert agent.recorder.consent.share == frozenset({"inventory"})
    assert (
        agent.recorder.telemetry_sample(
            TelemetryReported(device_id=DEVICE, occurred_at=T0, outbox_depth=0, uptime_s=0)
        )
        is False
    )
    step(agent, clock, 10)
    step(agent, clock, 10)
    assert len(samples(agent)) == 1  # none since
    assert read_status(agent.settings).dropped_events == 0

    # The same version again (a retained message after a reconnect) does nothing.
    agent.apply_config(config(1, consent={"share": ["inventory", "telemetry"]}))
    assert agent.recorder.outbox.last_seq() == 1
    assert agent.recorder.consent.share == frozenset({"inventory"})
    agent.apply_config(config(1, colour="red"))
    assert agent.recorder.outbox.last_seq() == 1


def test_unknown_config_keys_are_rejected(make_agent: AgentFactory) -> None:
    agent = make_agent()
    agent.apply_config(config(2, consent={"share": []}, colour="red", volume=11))
    (rejected,) = outbox(agent)
    assert isinstance(rejected, ConfigApplied)
    assert (rejected.version, rejected.status, rejected.error) == (
        2,
        "rejected",
        "settings not configurable remotely: colour, volume",
    )
    # Nothing of a rejected configuration is applied, not even its valid part.
    assert agent.recorder.consent == ConsentSettings()
    # An older version arriving late is ignored too.
    agent.apply_config(config(1, consent={"share": []}))
    assert agent.recorder.outbox.last_seq() == 1


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"telemetry_interval_s": 0}, "telemetry_interval_s must be above 0"),
        ({"telemetry_interval_s": "often"}, "could not convert string to float: 'often'"),
        ({"consent": {"share": ["everything"]}}, "share"),
        ({"rules": {"door_open_limit_s": -1}}, "door_open_limit_s"),
        ({"rules": {"door_limit": 60}}, "door_limit"),
    ],
)
def test_invalid_config_values_are_rejected(
    make_agent: AgentFactory, settings: dict[str, Any], error: str
) -> None:
    agent = make_agent()
    agent.apply_config(config(5, **settings))
    (rejected,) = outbox(agent)
    assert isinstance(rejected, ConfigApplied)
    assert (rejected.version, rejected.status) == (5, "rejected")
    assert rejected.error is not None
    assert error in rejected.error
    assert agent.recorder.consent == ConsentSettings()
    assert agent.recorder.applied_config_version() == 5


def test_a_misspelt_consent_key_is_rejected(make_agent: AgentFactory) -> None:
    agent = make_agent(consent=ConsentSettings(share=frozenset({"inventory"})))
    agent.apply_config(config(1, consent={"shares": ["inventory"]}))
    (report,) = outbox(agent)
    assert isinstance(report, ConfigApplied)
    assert (report.version, report.status) == (1, "rejected")
    assert report.error is not None
    assert "shares\n  Extra inputs are not permitted" in report.error
    assert agent.recorder.consent.share == frozenset({"inventory"})


def test_config_changes_rules_and_telemetry_interval(make_agent: AgentFactory, clock: ManualClock) -> None:
    door = SimulatedDoor()
    agent = make_agent(Sensors(door=door))
    agent.apply_config(
        config(1, rules=RulesSettings(door_open_limit_s=15).model_dump(), telemetry_interval_s=20)
    )
    assert isinstance(outbox(agent)[0], ConfigApplied)
    door.open()
    step(agent, clock, 0)
    assert step(agent, clock, 10) == []
    (raised,) = step(agent, clock, 10)
    assert isinstance(raised, AlertRaised)
    assert (raised.kind, raised.since) == ("door_open", T0)
    step(agent, clock, 10)
    assert [s.uptime_s for s in samples(agent)] == [0.0, 20.0]


def test_a_remote_configuration_survives_a_restart(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(telemetry_interval_s=60)
    agent.apply_config(
        config(
            3, consent={"share": ["inventory", "consumption_detail", "telemetry"]}, telemetry_interval_s=20
        )
    )
    agent = make_agent.restart(agent)
    assert agent.recorder.consent == ConsentSettings(share=ALL_CATEGORIES)
    assert agent.recorder.applied_config_version() == 3
    agent.scan(f"+{MILK}")
    (opened,) = agent.scan(f"open {MILK}")  # consumption detail is shared: the opening is sent
    assert isinstance(opened, ItemOpened)
    step(agent, clock, 0)
    step(agent, clock, 20)
    assert [s.uptime_s for s in samples(agent)] == [0.0, 20.0]  # the remote interval, not the file's

    # The retained version, delivered again after reconnecting, is not applied twice.
    agent.apply_config(config(3, consent={"share": []}))
    assert agent.recorder.consent == ConsentSettings(share=ALL_CATEGORIES)
    # A rejected version counts as handled, and leaves what was applied in place, restart or not.
    agent.apply_config(config(4, colour="red"))
    agent = make_agent.restart(agent)
    assert agent.recorder.applied_config_version() == 4
    assert agent.recorder.consent == ConsentSettings(share=ALL_CATEGORIES)
    assert [(e.version, e.status) for e in outbox(agent) if isinstance(e, ConfigApplied)] == [
        (3, "applied"),
        (4, "rejected"),
    ]


def test_a_partial_update_keeps_the_keys_it_does_not_name(
    make_agent: AgentFactory, clock: ManualClock
) -> None:
    door = SimulatedDoor()
    agent = make_agent(
        Sensors(door=door),
        rules=RulesSettings(door_open_limit_s=15),
        consent=ConsentSettings(share=ALL_CATEGORIES),
        telemetry_interval_s=600,
    )
    agent.handle_command(CATALOG)
    agent.scan(f"+{MILK}")  # best before 2024-05-06, five days ahead
    agent.apply_config(config(1, rules={"expiring_within_days": 5}))
    door.open()
    (expiring,) = step(agent, clock, 0)
    assert isinstance(expiring, AlertRaised)
    assert (expiring.kind, expiring.subject) == ("expiring", "lot:1")  # the new window
    assert step(agent, clock, 10) == []
    (door_alert,) = step(agent, clock, 10)  # 20 s: the file's 15 s limit still holds
    assert isinstance(door_alert, AlertRaised)
    assert door_alert.kind == "door_open"
    door.close()
    (closed,) = step(agent, clock, 10)
    assert isinstance(closed, AlertCleared)

    agent.apply_config(config(2, rules={"door_open_limit_s": 30}))
    door.open()
    assert step(agent, clock, 0) == []
    assert step(agent, clock, 20) == []  # 20 s: no longer too long, and the milk stays expiring
    (reopened,) = step(agent, clock, 15)  # 35 s
    assert isinstance(reopened, AlertRaised)
    assert (reopened.kind, reopened.since) == ("door_open", T0 + timedelta(seconds=30))

    # Consent and the telemetry interval: a version naming one leaves the other as it was.
    agent.apply_config(config(3, telemetry_interval_s=20))
    assert agent.recorder.consent == ConsentSettings(share=ALL_CATEGORIES)
    agent.apply_config(config(4, consent={"share": ["inventory", "telemetry"]}))
    assert agent.recorder.consent == ConsentSettings()
    step(agent, clock, 535)  # 600 s: the sample scheduled before version 3
    step(agent, clock, 20)
    step(agent, clock, 20)
    assert [s.uptime_s for s in samples(agent)] == [0.0, 600.0, 620.0, 640.0]
    assert [(e.version, e.status) for e in outbox(agent) if isinstance(e, ConfigApplied)] == [
        (1, "applied"),
        (2, "applied"),
        (3, "applied"),
        (4, "applied"),
    ]


def test_every_partial_update_survives_a_restart(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent()
    agent.apply_config(config(1, consent={"share": ["inventory"]}))
    agent.apply_config(config(2, telemetry_interval_s=20))
    agent = make_agent.restart(agent)
    assert agent.recorder.consent.share == frozenset({"inventory"})
    step(agent, clock, 0)
    assert samples(agent) == []


# status ---------------------------------------------------------------------------------------------------


def test_read_status(make_agent: AgentFactory, clock: ManualClock) -> None:
    agent = make_agent(Sensors(door=SimulatedDoor(is_open=True)), outbox_capacity=100)
    agent.handle_command(CATALOG)
    agent.handle_command(
        OrderUpdated(
            order_id=ORDER,
            device_id=DEVICE,
            status="dispatched",
            lines=(OrderLine(code=MILK, quantity=1), OrderLine(code=EGGS, quantity=6)),
        )
    )
    agent.scan(f"+{MILK}")
    agent.scan(f"+{PEAS}")
    agent.scan(f"open {MILK}")  # not sent by default, but the fridge knows
    step(agent, clock, 0)
    step(agent, clock, 130)

    status = read_status(agent.settings)
    assert status.device_id == DEVICE
    assert status.connected is False
    assert [(lot.id, lot.code, lot.quantity, lot.opened_at, label) for lot, label in status.lots] == [
        (2, PEAS, 1.0, None, f"unknown product {PEAS}"),
        (1, MILK, 1.0, T0, "Milk 1 l"),
    ]
    assert (status.outbox_depth, status.outbox_capacity, status.pressure, status.dropped_events) == (
        3,
        100,
        "none",
        0,
    )
    assert [(kind, subject) for kind, subject, _, _ in status.alerts] == [("door_open", "door")]
    assert status.offers == 0
    assert status.expected == [(str(ORDER), EGGS, 6, 0)]  # the milk came
    assert status.unknown_codes == [PEAS]


@pytest.mark.mosquitto
def test_the_connected_flag_is_reset_when_the_agent_stops(
    make_agent: AgentFactory, mosquitto: Mosquitto
) -> None:
    agent = make_agent(mqtt=mosquitto.mqtt())
    agent.start(poll=False)
    assert agent.uplink.wait_connected(10)
    agent.poll_once()  # as the sensor thread does: notes the connection for `frigo edge status`
    assert read_status(agent.settings).connected is True
    make_agent.stop(agent)
    assert read_status(agent.settings).connected is False


def test_read_status_shows_outbox_pressure(make_agent: AgentFactory) -> None:
    agent = make_agent(outbox_capacity=100)
    for _ in range(81):
        agent.scan(f"+{EGGS}")
    status = read_status(agent.settings)
    assert (status.outbox_depth, status.pressure, status.dropped_events) == (82, "warning", 0)
