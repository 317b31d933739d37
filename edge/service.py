"""Run the agent as a service: the data folder held, sensors opened, signals handled, stdin scans.

SIGINT and SIGTERM stop it the same way: no new input is taken, a scan under way is recorded,
the cloud gets up to ``STOP_FLUSH_S`` to acknowledge what waits, one line says what is left, and
the exit code is 0. A broker that refuses the agent for good (a protocol it does not speak, bad
credentials) ends it with one line saying what to change, and exit code 1.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

from edge.agent import Agent, run_stdin
from edge.datafolder import exclusive
from edge.hardware import build_sensors
from edge.settings import EdgeSettings
from shared.errors import BrokerRefused, FrigoError
from shared.mqtt import check_transport

# After a stop request, how long the cloud gets to acknowledge what waits in the outbox: a connected
# agent's last scans are acknowledged in milliseconds, and this stays well inside systemd's
# TimeoutStopSec=15. What is left goes out on the next start.
STOP_FLUSH_S = 3.0


class StopRequested(Exception):
    """Raised in the main thread by a stop request while it waits for a line of input."""


class Input:
    """Lines of a stream, where a stop request interrupts the wait for a line but never a scan.

    The signal handler raises :class:`StopRequested` only while :attr:`waiting`, so a scan already
    read is recorded in full before the agent stops.
    """

    def __init__(self, stream: TextIO, stop: threading.Event) -> None:
        self._stream = stream
        self._stop = stop
        self.waiting = False

    def __iter__(self) -> Iterator[str]:
        while True:
            self.waiting = True
            try:
                # Checked after `waiting` is set: a stop that came before found nothing to interrupt.
                if self._stop.is_set():
                    return
                line = self._stream.readline()
            finally:
                self.waiting = False
            if not line:
                return
            yield line


def run(settings: EdgeSettings, drain_timeout: float | None = None) -> int:
    """Run until SIGTERM/SIGINT (or, reading stdin, until end of input and the outbox drained).

    Return the process exit code: 0 after a stop or with everything acknowledged; 1 when the drain
    timed out, the broker refused the agent or the data folder is in use; 2 for settings that
    cannot work (a password in clear text, a data folder of another device).
    """
    stop = threading.Event()
    stopped_by: list[str] = []  # the signal that stopped the agent
    refusals: list[BrokerRefused] = []
    reader = Input(sys.stdin, stop) if settings.sensors.scanner == "stdin" else None
    main_thread = threading.main_thread().ident

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not refusals:
            stopped_by.append(signal.Signals(signum).name)
        stop.set()
        if reader is not None and reader.waiting:
            raise StopRequested

    def on_refused(error: BrokerRefused) -> None:
        refusals.append(error)
        stop.set()
        if reader is not None and main_thread is not None:
            # The main thread may be blocked reading stdin: a signal is what interrupts the read.
            signal.pthread_kill(main_thread, signal.SIGINT)

    # First of all: a signal during start-up must not end in a traceback either.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        check_transport(settings.mqtt)  # before the data folder is touched
        with exclusive(settings.data_dir, "start the agent"):
            sensors = build_sensors(settings)
            try:
                agent = Agent(settings, sensors=sensors, on_refused=on_refused)
            except BaseException:
                if sensors.scanner is not None:
                    sensors.scanner.close()  # let go of the grabbed scanner
                raise
            code, left = _serve(agent, reader, stop, drain_timeout, stopping=lambda: bool(stopped_by))
    except FrigoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    if refusals:
        print(f"error: {refusals[0]}", file=sys.stderr)
        return 1
    if stopped_by:
        waiting = (
            f"{left} events wait in the outbox for the next start" if left else "nothing waits to be sent"
        )
        print(f"stopped on {stopped_by[0]}; {waiting}", file=sys.stderr)
        return 0
    return code


def _serve(
    agent: Agent,
    reader: Input | None,
    stop: threading.Event,
    drain_timeout: float | None,
    stopping: Callable[[], bool],
) -> tuple[int, int]:
    """Start the agent and run it until input ends or ``stop``; return the exit code and events left."""
    agent.start()
    code = 0
    try:
        if reader is not None:
            code = run_stdin(agent, lines=reader, drain_timeout=drain_timeout, stop=stop)
        else:
            stop.wait()
    except StopRequested:
        pass
    finally:
        # Only a stop by signal flushes: a refused agent has no broker to flush to.
        left = agent.stop(flush_s=STOP_FLUSH_S if stopping() else 0.0)
    return code, left
