"""The worker's loop for fridges: commands to them, and the order answers they sent.

Both are tables the API and the planner write in the same transaction as the change they carry
(an outbox), and this loop drains: pending fridge commands (order updates, erasure wipes) are
published at QoS 1 and marked sent once the broker acknowledges them; order answers that fridges
sent are applied (``cloud/commerce/answers.py``). A pass that fails (the database restarting) is
logged and tried again on the next tick. Webhooks to retailers wait on other people's servers, so
they have a lane of their own (``cloud/outbox/lane.py``): nothing here waits behind them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from cloud.commerce.answers import apply_answers
from cloud.outbox import commands
from shared.clock import Clock

log = logging.getLogger(__name__)

# Seconds between passes: a fridge hears of an order's change within about this.
TICK_S = 0.25
# Seconds to wait for the broker's acknowledgement of a command before trying it again.
PUBACK_WAIT_S = 5.0

# Publish one command: (device id, payload) -> whether the broker acknowledged it in time.
Publish = Callable[[str, bytes, float], bool]


class Dispatcher:
    """Publish fridge commands and apply fridge answers on a background thread."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        publish: Publish,
        *,
        tick_s: float = TICK_S,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._publish = publish
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def run_once(self) -> None:
        """Do one pass: commands, then answers."""
        self.publish_commands()
        apply_answers(self._engine, self._clock.now())

    def publish_commands(self) -> int:
        """Publish the pending fridge commands; return how many the broker took."""
        with self._engine.begin() as connection:
            pending = commands.pending(connection)
        sent = [
            command_id
            for command_id, device, payload in pending
            if self._publish(device, payload.encode(), PUBACK_WAIT_S)
        ]
        if sent:
            with self._engine.begin() as connection:
                commands.mark_sent(connection, sent, self._clock.now())
        return len(sent)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.run_once()
            except Exception:
                log.exception("the dispatcher's pass failed; trying again in %.2f s", self._tick_s)
