"""Ingestion: take what devices publish off the MQTT thread, in batches bounded by size and time.

The MQTT thread queues each message; a thread of its own gathers them into batches and hands each
to a :class:`~cloud.ingest.batch.BatchProcessor` (validate, store each event once, dead letters),
in this process or in the writer process (``cloud/ingest/writer.py``). Only after a batch commits
does each device get an ``EventsAcknowledged`` for its events in it, so a device forgets nothing
the cloud could still lose.

:class:`~cloud.ingest.stats.IngestStats` is the one record of what ingestion did: ``/stats`` shows
it and ``cloud/api/metrics.py`` exposes it to Prometheus.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine

from cloud.ingest.batch import BatchProcessor, Message
from cloud.ingest.deadletters import DEFAULT_MAX_DEAD_LETTERS
from cloud.ingest.stats import IngestStats
from cloud.ingest.writer import WriterError, WriterProcess, WriterStopped
from shared.clock import Clock
from shared.messages import EventsAcknowledged

log = logging.getLogger(__name__)

# Cap on buffered messages: when the database falls behind, paho's thread blocks here and the
# broker holds the rest, instead of this process growing without bound.
MAX_BUFFERED = 50_000
# How often a batch being collected looks for more messages.
COLLECT_POLL_S = 0.002


# A message waiting for its batch: topic, payload, when it arrived, whether it came retained.
_Queued = tuple[str, bytes, datetime, bool]


class Ingestor:
    """Batch, store and acknowledge device messages."""

    def __init__(
        self,
        engine: Engine,
        acknowledge: Callable[[EventsAcknowledged], None],
        clock: Clock,
        *,
        batch_size: int = 500,
        batch_interval_s: float = 0.05,
        auto_enroll: bool = True,
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
        writer: WriterProcess | None = None,
    ) -> None:
        self._writer = writer
        self._acknowledge = acknowledge
        self._clock = clock
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self.stats = IngestStats()
        # Runs batches in this process: always when there is no writer, and whenever process() is called.
        self._processor = BatchProcessor(
            engine, clock, self.stats, auto_enroll=auto_enroll, max_dead_letters=max_dead_letters
        )
        # (topic, payload, arrival time, retained); None asks the ingest thread to stop.
        self._queue: queue.Queue[_Queued | None] = queue.Queue(MAX_BUFFERED)
        self._submitted = 0  # written by the MQTT thread only
        self._settled = 0  # written by the ingest thread only: messages whose batch is done
        self._oldest_in_flight: datetime | None = None  # arrival of the batch being collected
        self._thread: threading.Thread | None = None

    # Called from the MQTT network thread.
    def submit(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Queue one message from the broker for the next batch; ``retained`` if the broker sent it
        as a retained message."""
        # Counted before it is queued, so the depth never goes below zero while the put blocks.
        self._submitted += 1
        self._queue.put((topic, payload, self._clock.now(), retained))

    @property
    def writer(self) -> WriterProcess | None:
        """Return the writer process batches go to, or None if they are processed in this one."""
        return self._writer

    def queue_depth(self) -> int:
        """Return how many submitted messages are not through a batch yet (queued or in one)."""
        settled = self._settled  # read first: the difference can then only be too large, briefly
        return max(self._submitted - settled, 0)

    def lag_seconds(self) -> float:
        """Return the age of the oldest submitted message not through a batch yet; 0 when none waits."""
        oldest = self._oldest_in_flight
        if oldest is None:
            with self._queue.mutex:
                head = self._queue.queue[0] if self._queue.queue else None
            if head is None:
                return 0.0
            oldest = head[2]
        return max((self._clock.now() - oldest).total_seconds(), 0.0)

    def start(self) -> None:
        """Start the thread that commits batches (and the writer process, if there is one)."""
        if self._writer is not None:
            self._writer.start()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit and acknowledge what is queued, then stop (the writer last: the batches need it).

        The caller stops submitting first; whatever is left after ``timeout`` is not acknowledged,
        so the devices send it again.
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "stopping with %d messages not through a batch after %.0f s; the devices will "
                    "send their events again",
                    self.queue_depth(),
                    timeout,
                )
            self._thread = None
        if self._writer is not None:
            self._writer.stop()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self._oldest_in_flight = first[2]
            batch, stopping = self._gather(first)
            try:
                self._process_batch([(topic, payload, retained) for topic, payload, _, retained in batch])
            except WriterStopped as exc:
                # Stopped while the batch was in the writer: nothing after it can be stored either.
                log.warning("%s", exc)
                return
            except WriterError as exc:
                # The writer logged the cause: the devices still hold these events and resend them.
                log.error("batch of %d messages failed; devices will resend them: %s", len(batch), exc)
                time.sleep(1.0)
            except Exception:
                # The devices still hold these events and send them again: log, keep going.
                log.exception("batch of %d messages failed; devices will resend them", len(batch))
                time.sleep(1.0)
            finally:
                self._settled += len(batch)
                self._oldest_in_flight = None
            if stopping:
                return

    def _gather(self, first: _Queued) -> tuple[list[_Queued], bool]:
        """Return the batch ``first`` starts, once full or due, and whether stopping was asked.

        Polls instead of waiting on the queue for each message: every wake-up would take the GIL
        from the MQTT thread, which then reads the socket at half speed.
        """
        batch = [first]
        deadline = time.monotonic() + self._batch_interval_s
        while True:
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return batch, True
                batch.append(item)
            remaining = deadline - time.monotonic()
            if len(batch) >= self._batch_size or remaining <= 0:
                return batch, False
            time.sleep(min(remaining, COLLECT_POLL_S))

    def _process_batch(self, batch: Sequence[Message]) -> None:
        if self._writer is None:
            self.process(batch)
            return
        outcome = self._writer.process(batch, self._clock.now())
        self.stats.add(outcome.counts)
        self.stats.batch_sizes.observe(outcome.batch_size)
        if outcome.commit_seconds is not None:
            self.stats.observe_commit(outcome.commit_seconds)
        for ack in outcome.acks:
            self._acknowledge(ack)
        if outcome.error is not None:
            raise WriterError(outcome.error)

    def process(self, batch: Sequence[Message]) -> None:
        """Validate, store and acknowledge one batch of (topic, payload) messages, in this process."""
        for ack in self._processor.process(batch):
            self._acknowledge(ack)
