"""Virtual fridges: the real edge agent, driven by virtual households instead of a scanner."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.clock import Clock, SystemClock
from shared.mqtt import MqttSettings
from simulator.household import VirtualHousehold

log = logging.getLogger(__name__)


def device_id_for(index: int) -> str:
    """Return the device id of the fleet's ``index``-th fridge (from 1)."""
    return f"fridge-{index:03d}"


class Fleet:
    """Run ``size`` virtual fridges, each scanning ``rate`` times per second on average."""

    def __init__(
        self,
        size: int,
        mqtt: MqttSettings,
        data_dir: Path,
        *,
        rate: float = 1.0,
        seed: int = 1,
        clock: Clock | None = None,
        resend_after_s: float = 10.0,
    ) -> None:
        if size < 1:
            raise ValueError("a fleet needs at least one fridge")
        if rate <= 0:
            raise ValueError("the scan rate must be above 0")
        self._rate = rate
        clock = clock or SystemClock()
        self.agents = [
            Agent(
                EdgeSettings(
                    device_id=device_id_for(i),
                    data_dir=data_dir / device_id_for(i),
                    mqtt=mqtt,
                    resend_after_s=resend_after_s,
                ),
                clock,
            )
            for i in range(1, size + 1)
        ]
        self._households = [VirtualHousehold(seed * 1000 + i) for i in range(1, size + 1)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scans = 0

    def start(self) -> None:
        """Connect every agent and start scanning."""
        for agent in self.agents:
            agent.start()
        self._thread = threading.Thread(target=self._drive, name="fleet", daemon=True)
        self._thread.start()

    def stop_scanning(self) -> None:
        """Stop producing scans; the agents keep delivering what they recorded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def stop(self) -> None:
        """Stop scanning and disconnect every agent; unsent events stay in their outboxes."""
        self.stop_scanning()
        for agent in self.agents:
            agent.stop()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the cloud acknowledged every fridge's events."""
        deadline = time.monotonic() + timeout
        return all(agent.wait_drained(max(deadline - time.monotonic(), 0)) for agent in self.agents)

    def _drive(self) -> None:
        # One thread for every fridge: a tick scans once in each, at the requested mean rate.
        interval = 1.0 / self._rate
        next_tick = time.monotonic()
        while not self._stop.is_set():
            for agent, household in zip(self.agents, self._households, strict=True):
                line = household.next_line(agent.quantity)
                agent.scan(line)
                self.scans += 1
            next_tick += interval
            self._stop.wait(max(next_tick - time.monotonic(), 0))
