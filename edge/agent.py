"""The edge agent: scans in, inventory and outbox updated durably, events out to the cloud."""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from edge.database import open_database
from edge.errors import EdgeError
from edge.recorder import Recorder
from edge.scanner import parse_scan
from edge.settings import EdgeSettings
from edge.uplink import Uplink
from shared.clock import Clock, SystemClock
from shared.messages import Event, ItemAdded

log = logging.getLogger(__name__)

# How often `wait_drained` looks at the outbox.
DRAIN_POLL_S = 0.05


class Agent:
    """One fridge's agent; usable as a context manager that starts and stops it."""

    def __init__(self, settings: EdgeSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self._conn = open_database(settings.db_path)
        self._lock = threading.Lock()  # one scan at a time per agent
        self.recorder = Recorder(self._conn, settings.device_id, self._clock)
        self.uplink = Uplink(
            device_id=settings.device_id,
            mqtt_settings=settings.mqtt,
            db_path=settings.db_path,
            clock=self._clock,
            resend_after_s=settings.resend_after_s,
            window=settings.window,
            telemetry_interval_s=settings.telemetry_interval_s,
        )

    @property
    def device_id(self) -> str:
        """Return this fridge's device id."""
        return self.settings.device_id

    def start(self) -> None:
        """Connect to the broker and start sending whatever the outbox holds."""
        self.uplink.start()

    def stop(self) -> None:
        """Disconnect and close the database; nothing recorded is lost."""
        self.uplink.stop()
        self._conn.close()

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def scan(self, line: str) -> Event | None:
        """Record one scanner line; return its event, or None for a blank line."""
        parsed = parse_scan(line)
        if parsed is None:
            return None
        with self._lock:
            event = self.recorder.record(parsed)
        self.uplink.notify()
        return event

    def inventory(self) -> dict[str, int]:
        """Return what the fridge holds, by product code."""
        with self._lock:
            return self.recorder.inventory.snapshot()

    def quantity(self, code: str) -> int:
        """Return how many units of ``code`` the fridge holds."""
        with self._lock:
            return self.recorder.inventory.quantity(code)

    def outbox_depth(self) -> int:
        """Return how many events still wait for the cloud's acknowledgement."""
        with self._lock:
            return self.recorder.outbox.depth()

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the cloud has acknowledged every event; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outbox_depth() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(DRAIN_POLL_S)
        return True


def describe(event: Event, quantity_now: int) -> str:
    """Return the one-line confirmation printed for a recorded scan."""
    sign = "+" if isinstance(event, ItemAdded) else "-"
    return f"ok seq={event.seq} {sign}{event.quantity} {event.code} (now {quantity_now})"


def run_stdin(
    agent: Agent, lines: TextIO | None = None, out: TextIO | None = None, drain_timeout: float | None = None
) -> int:
    """Feed scanner lines to a started agent until end of input, then wait for the cloud's acks.

    Return 0 when everything recorded was acknowledged, 1 when ``drain_timeout`` ran out first.
    """
    lines = sys.stdin if lines is None else lines
    out = sys.stdout if out is None else out
    for line in lines:
        try:
            event = agent.scan(line)
        except EdgeError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            continue
        if event is not None:
            print(describe(event, agent.quantity(event.code)), file=out, flush=True)
    depth = agent.outbox_depth()
    if depth:
        print(
            f"input ended; waiting for the cloud to acknowledge {depth} events", file=sys.stderr, flush=True
        )
    if not agent.wait_drained(drain_timeout):
        print(
            f"gave up waiting: {agent.outbox_depth()} events stay in the outbox and go out on the next start",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0
