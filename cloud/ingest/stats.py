"""What ingestion did: the counters and distributions ``/stats`` and ``/metrics`` show.

:class:`IngestStats` is the one record of it: the ingest thread writes it, the API reads it.
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
class IngestStats:
    """Counters since start; written by the ingest thread only, read by the API and the metrics."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0  # committed batches that stored events or presence
    last_commit_ms: float = 0.0
    dead_letters: int = 0  # dead letters committed
    dead_letter_failures: int = 0  # writes of a batch's dead letters that failed (and were logged)
    # Commit time of each batch counted in ``batches``; size (messages) of every batch processed.
    commit_seconds: Distribution = field(default_factory=lambda: Distribution(COMMIT_SECONDS_BUCKETS))
    batch_sizes: Distribution = field(default_factory=lambda: Distribution(BATCH_SIZE_BUCKETS))

    @property
    def rejected_total(self) -> int:
        """Return how many messages were rejected, for any reason."""
        return sum(self.rejected.values())
