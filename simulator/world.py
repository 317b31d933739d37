"""Households living with real fridges on one virtual clock: days of life in seconds of wall time.

Each :class:`~simulator.life.Household` drives the real edge agent of its fridge (through the
scanner's grammar); the agents, and the cloud when it is given the same clock, read the time from
one :class:`~shared.clock.ManualClock` that jumps from one action to the next. The agents publish
through a real broker as in production; the world waits for their outboxes to drain at the end of
every day, so a run's events are all in the cloud when it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from edge.agent import Agent
from edge.errors import NothingToDo, NotInFridge, ScanError
from edge.settings import EdgeSettings
from shared.clock import ManualClock
from shared.mqtt import MqttSettings
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
    ) -> None:
        if households < 1:
            raise ValueError("a world needs at least one household")
        self.clock = clock
        start = clock.now().date()
        self.households = [Household(seed * 100_003 + i, start) for i in range(1, households + 1)]
        self.agents = [
            Agent(
                EdgeSettings(
                    device_id=fridge_id(i),
                    data_dir=data_dir / fridge_id(i),
                    mqtt=mqtt,
                    telemetry_interval_s=TELEMETRY_INTERVAL_S,
                ),
                clock,
            )
            for i in range(1, households + 1)
        ]
        self._day = start

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

    def _live_day(self) -> DayReport:
        day = self._day
        scheduled = []
        truths = []
        for agent, household in zip(self.agents, self.households, strict=True):
            actions, truth = household.live()
            truths.append(truth)
            scheduled += [(action.at, agent, action.line) for action in actions]
        scheduled.sort(key=lambda item: item[0])
        report = DayReport(day, len(scheduled), 0, 0, truths)
        for at, agent, line in scheduled:
            self._advance_to(at.replace(tzinfo=UTC))
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

    def _advance_to(self, moment: datetime) -> None:
        now = self.clock.now()
        if moment > now:
            self.clock.advance(moment - now)
