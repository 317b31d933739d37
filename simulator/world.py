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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from edge.agent import Agent
from edge.errors import NothingToDo, NotInFridge, ScanError
from edge.settings import EdgeSettings
from shared import topics
from shared.clock import Clock, ManualClock, OffsetClock
from shared.mqtt import MqttSettings, create_client
from simulator.faults import Faults
from simulator.life import DayTruth, Household

log = logging.getLogger(__name__)

# Telemetry once every six virtual hours: a sample a minute would outnumber the events 100 to 1.
TELEMETRY_INTERVAL_S = 6 * 3600
DRAIN_TIMEOUT_S = 120.0


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
        self.households = [Household(seed * 100_003 + i, start) for i in range(1, households + 1)]
        self._settings = [
            EdgeSettings(
                device_id=fridge_id(i),
                data_dir=data_dir / fridge_id(i),
                mqtt=mqtt,
                telemetry_interval_s=TELEMETRY_INTERVAL_S,
                resend_after_s=self.faults.resend_after_s,
            )
            for i in range(1, households + 1)
        ]
        self._clocks: list[Clock] = [self._skewed(clock) for _ in self._settings]
        self.agents = [Agent(s, c) for s, c in zip(self._settings, self._clocks, strict=True)]
        self._day = start
        if speed is not None and speed <= 0:
            raise ValueError("the speed must be above 0 (virtual seconds per wall second)")
        self._speed = speed  # None: as fast as the machine goes
        self._pace_from: tuple[float, datetime] | None = None  # (wall, virtual) when pacing began

    def start(self) -> None:
        """Connect every fridge."""
        for agent in self.agents:
            agent.start(poll=False)

    def stop(self) -> None:
        """Disconnect every fridge; what was not delivered stays in its outbox."""
        for agent in self.agents:
            agent.stop()

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
        scheduled: list[tuple[datetime, int, str]] = []
        truths = []
        for index, household in enumerate(self.households):
            actions, truth = household.live()
            truths.append(truth)
            scheduled += [(action.at, index, action.line) for action in actions]
        scheduled += self._faults_of(day)
        scheduled.sort(key=lambda item: item[0])
        report = DayReport(day, sum(1 for *_, line in scheduled if not line.startswith("!")), 0, 0, truths)
        for at, index, line in scheduled:
            self._advance_to(at.replace(tzinfo=UTC))
            if line.startswith("!"):
                self._inject(line[1:], index)
                report.faults[line[1:]] = report.faults.get(line[1:], 0) + 1
                continue
            agent = self.agents[index]
            try:
                report.events += len(agent.scan(line))
            except (ScanError, NotInFridge, NothingToDo) as exc:
                report.refused += 1
                log.warning("%s refused %r: %s", agent.device_id, line, exc)
        self._day = day + timedelta(days=1)
        self._advance_to(datetime.combine(self._day, datetime.min.time(), UTC))
        for agent in self.agents:
            agent.poll_once()  # rules and telemetry, once a virtual day
        if not self.wait_drained():
            raise TimeoutError(f"the cloud did not acknowledge {day}'s events in {DRAIN_TIMEOUT_S:.0f} s")
        return report

    def _faults_of(self, day: date) -> list[tuple[datetime, int, str]]:
        """Return the day's faults as (time, fridge, "!kind"), drawn from the faults' own generator."""
        rng = self._fault_random
        midnight = datetime.combine(day, datetime.min.time())
        faults: list[tuple[datetime, int, str]] = []

        def at_random() -> datetime:
            return midnight + timedelta(seconds=rng.uniform(0, 86_400))

        for kind, rate in (
            ("broker_restart", self.faults.broker_restarts_per_day),
            ("malformed", self.faults.malformed_per_day),
        ):
            faults += [
                (at_random(), rng.randrange(len(self.agents)), f"!{kind}") for _ in range(_count(rng, rate))
            ]
        for index in range(len(self.agents)):
            if rng.random() < self.faults.power_losses_per_fridge_day:
                faults.append((at_random(), index, "!power_loss"))
        return faults

    def _inject(self, kind: str, index: int) -> None:
        if kind == "broker_restart":
            assert self._restart_broker is not None
            self._restart_broker()
        elif kind == "power_loss":
            # The agent stops where it is and starts again from its database, like a fridge whose
            # plug was pulled: whatever the cloud had not acknowledged goes out again.
            self.agents[index].stop()
            self.agents[index] = Agent(self._settings[index], self._clocks[index])
            self.agents[index].start(poll=False)
        elif kind == "malformed":
            self._publish_junk(fridge_id(index + 1))

    def _publish_junk(self, device_id: str) -> None:
        client, properties = create_client(self._mqtt, f"sim-junk-{device_id}", persistent=False)
        try:
            if self._mqtt.protocol == "5":
                client.connect(self._mqtt.host, self._mqtt.port, properties=properties)
            else:
                client.connect(self._mqtt.host, self._mqtt.port)
            client.loop_start()
            junk = self._fault_random.choice([b"{not json", b'{"type": "item_teleported"}', b"\xff\xfe"])
            client.publish(topics.events(device_id), junk, qos=1).wait_for_publish(5)
        except (OSError, RuntimeError, ValueError) as exc:  # a broker restarting: the fault misses
            log.info("junk for %s not published: %s", device_id, exc)
        finally:
            client.disconnect()
            client.loop_stop()

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


def _count(rng: random.Random, rate: float) -> int:
    """Return how many of something happen on a day at ``rate`` a day on average."""
    whole = int(rate)
    return whole + (1 if rng.random() < rate - whole else 0)
