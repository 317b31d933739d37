"""The webhook lane: deliveries sent on threads of their own, a few per retailer at a time.

A webhook waits on a retailer's server, which may be slow, or answer one byte at a time until the
attempt's deadline (15 s). Fridge commands, erasure wipes and fridge answers must not wait behind
that, so the dispatcher (``cloud/dispatcher.py``) sends no webhooks: this lane does. Its loop
claims due deliveries whenever a thread of its pool is free and hands each to one; no retailer has
more than ``PER_RETAILER`` in flight at once in this worker, so an endpoint that hangs holds two
threads and everyone else's webhooks go on. A claim is a lease in the database
(:meth:`WebhookSender.claim`), so with several workers each message is still sent by one of them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from cloud.outbox.deliveries import Claimed, WebhookSender
from shared.clock import Clock

log = logging.getLogger(__name__)

# Threads sending webhooks. They wait on sockets, not on the CPU: with 8, three retailers whose
# endpoints all hang until the deadline (two threads each) still leave two for everyone else.
POOL_SIZE = 8
# A retailer's deliveries in flight at once in one worker: one that hangs does not stop the next,
# and a retailer's slow endpoint holds no more than two threads.
PER_RETAILER = 2
# Seconds between looks for due deliveries while no thread coming free wakes the loop sooner.
TICK_S = 0.25


class WebhookLane:
    """Send due webhooks on a pool of threads of their own, at most a few per retailer at once."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        allow_private: bool = False,
        sender: WebhookSender | None = None,
        pool_size: int = POOL_SIZE,
        per_retailer: int = PER_RETAILER,
        tick_s: float = TICK_S,
    ) -> None:
        self._owns_sender = sender is None
        self._sender = sender or WebhookSender(engine, clock, allow_private=allow_private)
        self._pool_size = pool_size
        self._per_retailer = per_retailer
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._sending: Counter[str] = Counter()  # deliveries in flight, by retailer
        self._in_flight: set[str] = set()  # their ids, never claimed again while on the wire
        self._wake = threading.Event()  # a thread came free, or the lane is stopping
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def in_flight(self) -> int:
        """Return how many deliveries are being sent now."""
        with self._lock:
            return self._sending.total()

    def start(self) -> None:
        """Start the loop and its pool."""
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self._pool_size, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._run, name="webhook-lane", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming, and wait for the deliveries in flight: each ends by its deadline."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._owns_sender:
            self._sender.close()

    def run_once(self) -> int:
        """Claim what the free threads can take and hand it to them; return how many."""
        assert self._pool is not None, "start() the lane first"
        with self._lock:
            free = self._pool_size - self._sending.total()
            busy = dict(self._sending)
            sending = set(self._in_flight)
        claimed = self._sender.claim(free, per_retailer=self._per_retailer, busy=busy, sending=sending)
        for delivery in claimed:
            with self._lock:
                self._sending[delivery.retailer_id] += 1
                self._in_flight.add(delivery.id)
            self._pool.submit(self._send, delivery)
        return len(claimed)

    def _send(self, delivery: Claimed) -> None:
        try:
            self._sender.attempt(delivery)
        except Exception:
            # Unrecorded (the database restarting, say): its lease runs out and it is tried again.
            log.exception("webhook %s: the attempt could not be recorded", delivery.id)
        finally:
            with self._lock:
                self._in_flight.discard(delivery.id)
                self._sending[delivery.retailer_id] -= 1
                if self._sending[delivery.retailer_id] <= 0:
                    del self._sending[delivery.retailer_id]
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claimed = self.run_once()
            except Exception:
                log.exception("the webhook lane's claim failed; trying again in %.2f s", self._tick_s)
                claimed = 0
            if not claimed:  # nothing due, or no thread free: until one comes free, or the tick
                self._wake.wait(self._tick_s)
