"""What ingestion did: the counters and distributions ``/stats`` and ``/metrics`` show.

:class:`IngestStats` is the one record of it: the ingest thread writes it, the API reads it. Its
counters are an :class:`IngestCounts`, the part a batch moves and the writer process sends back.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# Upper bounds of the commit-time histogram, in seconds: a small SQLite batch commits in about a
# millisecond, a full PostgreSQL batch in tens of them; beyond 2 s the database is in trouble.
COMMIT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# Upper bounds of the batch-size histogram, in messages: 1 when idle, up to batch_size (<= 10,000).
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


class RejectReason(StrEnum):
    """Why a message, or one event in it, was refused: the label of the rejection counters."""

    INVALID_TOPIC = "invalid_topic"
    INVALID_PAYLOAD = "invalid_payload"
    DEVICE_MISMATCH = "device_mismatch"
    UNEXPECTED_TOPIC = "unexpected_topic"
    UNKNOWN_DEVICE = "unknown_device"
    SEQ_CONFLICT = "seq_conflict"
    EVENT_ID_CONFLICT = "event_id_conflict"
    RETAINED = "retained"


@dataclass(frozen=True, slots=True)
class DistributionSnapshot:
    """A :class:`Distribution` at one moment."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # per bound: how many observations were <= it
    count: int
    sum: float


class Distribution:
    """Observations counted into fixed buckets, like a Prometheus histogram; safe across threads."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation."""
        index = bisect.bisect_left(self.bounds, value)  # the first bound >= value
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> DistributionSnapshot:
        """Return a consistent copy of the counts."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for count in counts[:-1]:
            running += count
            cumulative.append(running)
        return DistributionSnapshot(self.bounds, tuple(cumulative), running + counts[-1], total)


@dataclass
class IngestCounts:
    """The counters a batch moves: running totals, or the change one batch made to them.

    The writer process sends one of these back per batch (the change) and the worker adds it to its
    own totals: typed fields, so a renamed counter is a type error rather than a silent zero.
    """

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0  # committed batches that stored events or presence
    dead_letters: int = 0  # dead letters committed
    dead_letter_failures: int = 0  # writes of a batch's dead letters that failed (and were logged)

    def snapshot(self) -> IngestCounts:
        """Return a copy of the counters as they are now."""
        return IngestCounts(
            received=self.received,
            stored=self.stored,
            duplicates=self.duplicates,
            rejected=Counter(self.rejected),
            batches=self.batches,
            dead_letters=self.dead_letters,
            dead_letter_failures=self.dead_letter_failures,
        )

    def since(self, earlier: IngestCounts) -> IngestCounts:
        """Return what the counters moved by from ``earlier`` (a snapshot of them) to now."""
        rejected = Counter(self.rejected)
        rejected.subtract(earlier.rejected)
        return IngestCounts(
            received=self.received - earlier.received,
            stored=self.stored - earlier.stored,
            duplicates=self.duplicates - earlier.duplicates,
            rejected=+rejected,  # counters only grow: this drops the reasons that did not move
            batches=self.batches - earlier.batches,
            dead_letters=self.dead_letters - earlier.dead_letters,
            dead_letter_failures=self.dead_letter_failures - earlier.dead_letter_failures,
        )

    def add(self, delta: IngestCounts) -> None:
        """Move the counters by ``delta`` (what :meth:`since` returned elsewhere)."""
        self.received += delta.received
        self.stored += delta.stored
        self.duplicates += delta.duplicates
        self.rejected.update(delta.rejected)
        self.batches += delta.batches
        self.dead_letters += delta.dead_letters
        self.dead_letter_failures += delta.dead_letter_failures

    @property
    def rejected_total(self) -> int:
        """Return how many messages were rejected, for any reason."""
        return sum(self.rejected.values())


@dataclass
class IngestStats(IngestCounts):
    """Counters since start; written by the ingest thread only, read by the API and the metrics."""

    last_commit_ms: float = 0.0
    # Commit time of each batch counted in ``batches``; size (messages) of every batch processed.
    commit_seconds: Distribution = field(default_factory=lambda: Distribution(COMMIT_SECONDS_BUCKETS))
    batch_sizes: Distribution = field(default_factory=lambda: Distribution(BATCH_SIZE_BUCKETS))

    def observe_commit(self, seconds: float) -> None:
        """Record how long one batch took to store and commit."""
        self.last_commit_ms = seconds * 1000
        self.commit_seconds.observe(seconds)
