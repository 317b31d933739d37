"""Run the agent as a service: sensors opened, signals handled, stdin scans if configured."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from edge.agent import Agent, run_stdin
from edge.errors import EdgeError
from edge.hardware import build_sensors
from edge.settings import EdgeSettings

log = logging.getLogger(__name__)


def run(settings: EdgeSettings, drain_timeout: float | None = None) -> int:
    """Run until SIGTERM/SIGINT (or, reading stdin, until end of input and the outbox drained).

    Return the process exit code.
    """
    try:
        agent = Agent(settings, sensors=build_sensors(settings))
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if settings.sensors.scanner == "stdin":
            # The main thread is blocked reading stdin: interrupt it.
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    code = 0
    try:
        if settings.sensors.scanner == "stdin":
            code = run_stdin(agent, drain_timeout=drain_timeout)
        else:
            stop.wait()
    except KeyboardInterrupt:
        print(
            f"stopping; {agent.outbox_depth()} events wait in the outbox for the next start", file=sys.stderr
        )
    finally:
        agent.stop()
    return code
