"""Prometheus metrics of one cloud worker, read at scrape time from the ingest worker's own state.

Nothing here counts: :class:`IngestCollector` reads :class:`cloud.ingest.stats.IngestStats` (which
``/stats`` shows too) and the Ingestor's queue, so the two views cannot disagree. Each worker has a
registry of its own (:func:`create_registry`); several workers in one process do not collide.

=======================================  =========  ===============================================
Metric                                   Type       Meaning
=======================================  =========  ===============================================
frigo_ingest_received_total              counter    messages taken from the broker into a batch
frigo_ingest_stored_total                counter    events stored (new ones; redeliveries excluded)
frigo_ingest_duplicates_total            counter    events already stored or twice in one batch
frigo_ingest_rejected_total{reason}      counter    refused messages or events, by reason
frigo_ingest_batches_total               counter    committed batches that stored events/presence
frigo_dead_letters_total                 counter    dead letters committed (one per rejection)
frigo_dead_letter_failures_total         counter    batches whose dead letters could not be written
frigo_ingest_batch_commit_seconds        histogram  transaction time of each committed batch
frigo_ingest_batch_size                  histogram  messages in each batch processed
frigo_ingest_queue_depth                 gauge      messages received, not yet through a batch
frigo_ingest_lag_seconds                 gauge      age of the oldest of those (0 when none waits)
frigo_broker_connected                   gauge      1 while connected to the MQTT broker, else 0
=======================================  =========  ===============================================

``frigo_ingest_lag_seconds`` is the consumer lag in time, measured when Prometheus scrapes: how long
the oldest message received from the broker has been waiting for its batch to finish (queued, being
collected or being committed). It falls back to 0 once the worker has caught up, unlike a value kept
from the last batch, which would stay high on an idle worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from cloud.ingest.ingestor import Ingestor
from cloud.ingest.stats import Distribution, RejectReason

__all__ = ["CONTENT_TYPE", "IngestCollector", "create_registry", "render"]

# What /metrics answers with: the Prometheus text format.
CONTENT_TYPE = CONTENT_TYPE_LATEST


class IngestCollector:
    """Expose an Ingestor's counters, histograms and queue, and the broker connection."""

    def __init__(self, ingestor: Ingestor, broker_connected: Callable[[], bool]) -> None:
        self._ingestor = ingestor
        self._broker_connected = broker_connected

    def collect(self) -> Iterator[Metric]:
        """Return the current value of every metric (called on each scrape)."""
        stats = self._ingestor.stats
        yield CounterMetricFamily(
            "frigo_ingest_received", "Messages taken from the broker into a batch.", value=stats.received
        )
        yield CounterMetricFamily(
            "frigo_ingest_stored", "Events stored for the first time.", value=stats.stored
        )
        yield CounterMetricFamily(
            "frigo_ingest_duplicates",
            "Events received again: already stored, or twice in one batch.",
            value=stats.duplicates,
        )
        rejected = CounterMetricFamily(
            "frigo_ingest_rejected", "Messages or events refused, by reason.", labels=["reason"]
        )
        for reason in RejectReason:
            # Looked up, not iterated: the ingest thread may add a key meanwhile.
            rejected.add_metric([reason.value], stats.rejected.get(reason.value, 0))
        yield rejected
        yield CounterMetricFamily(
            "frigo_ingest_batches",
            "Batches committed that stored events or device presence.",
            value=stats.batches,
        )
        yield CounterMetricFamily(
            "frigo_dead_letters", "Dead letters committed, one per rejection.", value=stats.dead_letters
        )
        yield CounterMetricFamily(
            "frigo_dead_letter_failures",
            "Batches whose dead letters could not be written (logged; ingestion went on).",
            value=stats.dead_letter_failures,
        )
        yield _histogram(
            "frigo_ingest_batch_commit_seconds",
            "Time to store and commit one batch of events or presence.",
            stats.commit_seconds,
        )
        yield _histogram("frigo_ingest_batch_size", "Messages in each batch processed.", stats.batch_sizes)
        yield GaugeMetricFamily(
            "frigo_ingest_queue_depth",
            "Messages received from the broker and not yet through a batch.",
            value=self._ingestor.queue_depth(),
        )
        yield GaugeMetricFamily(
            "frigo_ingest_lag_seconds",
            "Age of the oldest message received and not yet through a batch; 0 when none waits.",
            value=self._ingestor.lag_seconds(),
        )
        yield GaugeMetricFamily(
            "frigo_broker_connected",
            "1 while the worker is connected to the MQTT broker, else 0.",
            value=1.0 if self._broker_connected() else 0.0,
        )


def _histogram(name: str, documentation: str, distribution: Distribution) -> HistogramMetricFamily:
    snapshot = distribution.snapshot()
    buckets = [
        (repr(bound), float(count))  # the bounds are plain floats: 0.001, 1.0, 10000.0
        for bound, count in zip(snapshot.bounds, snapshot.cumulative, strict=True)
    ]
    buckets.append(("+Inf", float(snapshot.count)))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=snapshot.sum)


def create_registry(
    ingestor: Ingestor, broker_connected: Callable[[], bool], *, process: bool = True
) -> CollectorRegistry:
    """Return a registry of this worker's own: ingestion metrics, and the process's if ``process``."""
    registry = CollectorRegistry()
    registry.register(IngestCollector(ingestor, broker_connected))
    if process:
        # CPU, memory and open files of this process (Linux only; empty elsewhere).
        ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Return every metric of ``registry`` in the Prometheus text format."""
    return generate_latest(registry)
