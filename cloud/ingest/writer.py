"""The writer: a child process that validates, stores and acknowledges a worker's batches.

A cloud worker reads MQTT with paho in one thread and validated and committed batches in another.
In one CPython process the two share the GIL: the paho thread gives it up at every socket call
(four or five per message) and then waits for the busy ingest thread to hand it back, so the
worker read at about half the rate of a bare paho subscriber (the convoy effect; measured in
docs/BENCHMARKS.md). With the batches validated and committed here, in a process of its own, the
worker's main process only reads, queues and acknowledges.

The worker's :class:`~cloud.ingest.ingestor.Ingestor` still batches, counts and acknowledges: it sends each
batch here, where a :class:`~cloud.ingest.batch.BatchProcessor` of this process's own runs it, and gets
back the acknowledgements to publish and what the batch did to the counters.
If this process dies, the worker starts another; the batch it held is not acknowledged, so the
devices send it again.

The child ignores SIGINT and SIGTERM: Ctrl-C in a terminal reaches the whole process group, and the
child must finish the batch it holds and leave when the worker says so (None on the pipe), not die
mid-commit and be taken for a crash.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cloud.db.engine import create_db_engine
from cloud.errors import CloudError
from cloud.ingest.batch import BatchProcessor, Message
from cloud.ingest.stats import IngestCounts, IngestStats
from cloud.logs import configure_logging
from shared.messages import EventsAcknowledged

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
# Signals meant for the worker, which stops the child itself: the child never acts on them.
WORKER_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class WriterError(CloudError):
    """A batch failed in the writer process, or the process died; the devices will resend it."""


class WriterStopped(WriterError):
    """The worker stopped the writer before a batch was done; the devices will resend it."""

    def __init__(self, messages: int) -> None:
        super().__init__(
            f"a batch of {messages} messages was not stored: the worker is stopping; "
            "the devices will send it again"
        )


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: acknowledgements to publish and the counters' changes."""

    acks: list[EventsAcknowledged]
    counts: IngestCounts  # the change, to add to the worker's totals
    batch_size: int = 0
    commit_seconds: float | None = None  # set when the batch committed events or presence
    error: str | None = None


@dataclass(frozen=True)
class WriterConfig:
    """What the writer process needs to build its own batch processor."""

    database_url: str
    auto_enroll: bool
    max_dead_letters: int
    log_level: int
    log_json: bool


class WriterProcess:
    """The writer child process, seen from the worker: send a batch, get its outcome."""

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
        # spawn, not fork: the worker already runs threads (paho, HTTP) a fork would copy mid-step.
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: multiprocessing.connection.Connection | None = None
        # Held while a batch is in the pipe; stop() takes it to send None between batches.
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """Return the child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and wait until it has connected to the database."""
        self._stopping = False
        self._spawn()

    def _spawn(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child, self._config), name="frigo-writer", daemon=True
        )
        # Blocked in this thread, the signals stay blocked through the child's fork and exec until
        # serve() ignores them: a Ctrl-C while the child imports cannot kill it either.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            process.kill()
            raise WriterError(f"the writer process did not start in {START_TIMEOUT_S:.0f} s")
        try:
            status, detail = parent.recv()
        except EOFError:
            process.join(5)
            raise WriterError(f"the writer process exited at start (code {process.exitcode})") from None
        if status != "ready":
            process.join(5)
            raise WriterError(f"the writer process could not start: {detail}")
        self._process, self._connection = process, parent

    def process(self, batch: Sequence[Message], received_at: datetime) -> BatchOutcome:
        """Have the child validate, store and acknowledge ``batch``, received at ``received_at``
        (the worker's clock, virtual in a simulation); restart the child if it died.

        Raise :class:`WriterStopped` once :meth:`stop` was called."""
        with self._lock:
            if self._stopping:
                raise WriterStopped(len(batch))
            if self._connection is None:
                self._spawn()
            assert self._connection is not None
            try:
                self._connection.send((batch, received_at))
                outcome: BatchOutcome = self._connection.recv()
            except (EOFError, OSError) as exc:
                code = self._process.exitcode if self._process is not None else None
                self._discard()
                if self._stopping:  # stop() killed it: a batch outlived its timeout, not a crash
                    raise WriterStopped(len(batch)) from exc
                log.error("the writer process died (exit code %s); starting another", code)
                self._spawn()
                raise WriterError(f"the writer process died with a batch of {len(batch)} messages") from exc
        return outcome

    def stop(self, timeout: float = 10.0) -> None:
        """Let the child finish its batch and exit; kill it if it does not within ``timeout``."""
        self._stopping = True  # read by process(): no new batch, and no restart
        if not self._lock.acquire(timeout=timeout):
            # A batch is still in the child: kill it; process() then raises WriterStopped.
            process = self._process
            if process is not None and process.is_alive():
                process.kill()
            if not self._lock.acquire(timeout=5):
                log.warning("the writer process did not stop")
                return
        try:
            if self._connection is not None:
                with contextlib.suppress(OSError):  # the child is already gone
                    self._connection.send(None)
            if self._process is not None:
                self._process.join(timeout)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join(5)
            self._discard()
        finally:
            self._lock.release()

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._process is not None and not self._process.is_alive():
            self._process.close()
        self._process, self._connection = None, None


def serve(connection: multiprocessing.connection.Connection, config: WriterConfig) -> None:
    """Run in the child: process batches from ``connection`` until it sends None or closes."""
    for signum in WORKER_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    # Unblocked only now they are ignored (the worker blocked them for the start): one sent
    # meanwhile is dropped.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    configure_logging(config.log_level, json=config.log_json)
    try:
        engine = create_db_engine(config.database_url)
        with engine.connect():
            pass
    except Exception as exc:
        connection.send(("failed", str(exc)))
        return
    clock = _BatchClock()
    processor = BatchProcessor(
        engine,
        clock,
        IngestStats(),
        auto_enroll=config.auto_enroll,
        max_dead_letters=config.max_dead_letters,
    )
    connection.send(("ready", None))
    try:
        while True:
            try:
                batch = connection.recv()
            except EOFError:
                return  # the worker is gone
            if batch is None:
                return
            messages, clock.at = batch
            connection.send(_run_batch(processor, messages))
    finally:
        engine.dispose()


class _BatchClock:
    """The child's clock: the time the worker received the batch being processed."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        """Return the batch's time of receipt."""
        return self.at


def _run_batch(processor: BatchProcessor, batch: Sequence[Message]) -> BatchOutcome:
    stats = processor.stats
    before = stats.snapshot()
    acks: list[EventsAcknowledged] = []  # only ever sent after a commit
    error = None
    try:
        acks = processor.process(batch)
    except Exception as exc:
        log.exception("batch of %d messages failed; devices will resend them", len(batch))
        error = f"{type(exc).__name__}: {exc}"
    # Taken after a failure too: what the batch counted before it failed (received, rejected) stays.
    counts = stats.since(before)
    return BatchOutcome(
        acks=acks,
        counts=counts,
        batch_size=len(batch),
        commit_seconds=stats.last_commit_ms / 1000 if counts.batches else None,
        error=error,
    )
