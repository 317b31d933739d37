"""Ingestion: validate what devices publish, store each event once, then acknowledge it.

Messages from the broker are queued and committed in batches bounded by size and time. Only after
a batch commits does each device get an ``EventsAcknowledged`` for its events in it, so a device
forgets nothing the cloud could still lose. A unique key on (device, seq) with insert-or-ignore
makes redelivery harmless. A message that is refused is logged with the reason, counted and kept
as a dead letter (``cloud/ingest/deadletters.py``); it never stops ingestion.

:class:`IngestStats` is the one record of what ingestion did: ``/stats`` shows it and
``cloud/api/metrics.py`` exposes it to Prometheus.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from cloud.db.engine import bulk_insert_ignoring, insert_ignoring_duplicates
from cloud.db.tables import DEVICES, EVENTS, HOUSEHOLDS
from cloud.identity.devices import household_id_for
from cloud.ingest.deadletters import DEFAULT_MAX_DEAD_LETTERS, DeadLetterStore, Rejection, dead_letter_row
from cloud.ingest.stats import IngestStats, RejectReason
from cloud.ingest.writer import WriterError, WriterProcess
from shared import topics
from shared.clock import Clock
from shared.errors import InvalidMessage, InvalidTopic
from shared.messages import (
    Event,
    EventsAcknowledged,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
    decode_availability,
    decode_events,
    decode_telemetry,
    encode,
    seq_ranges,
)

log = logging.getLogger(__name__)

# Cap on buffered messages: when the database falls behind, paho's thread blocks here and the
# broker holds the rest, instead of this process growing without bound.
MAX_BUFFERED = 50_000
# How often a batch being collected looks for more messages.
COLLECT_POLL_S = 0.002


@dataclass(frozen=True, slots=True)
class _Accepted:
    event: Event
    household_id: str


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
        self._engine = engine
        self._writer = writer
        self._acknowledge = acknowledge
        self._clock = clock
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self._auto_enroll = auto_enroll
        self._insert_households = insert_ignoring_duplicates(engine, HOUSEHOLDS)
        self._insert_devices = insert_ignoring_duplicates(engine, DEVICES)
        self._households: dict[str, str] = {}  # device id -> household id, for known devices
        self._dead_letters = DeadLetterStore(engine, max_dead_letters)
        self._rejections: list[Rejection] = []  # of the batch being processed
        # (topic, payload, arrival time); None asks the ingest thread to stop.
        self._queue: queue.Queue[tuple[str, bytes, datetime] | None] = queue.Queue(MAX_BUFFERED)
        self._submitted = 0  # written by the MQTT thread only
        self._settled = 0  # written by the ingest thread only: messages whose batch is done
        self._oldest_in_flight: datetime | None = None  # arrival of the batch being collected
        self._thread: threading.Thread | None = None
        self.stats = IngestStats()

    # Called from the MQTT network thread.
    def submit(self, topic: str, payload: bytes) -> None:
        """Queue one message from the broker for the next batch."""
        # Counted before it is queued, so the depth never goes below zero while the put blocks.
        self._submitted += 1
        self._queue.put((topic, payload, self._clock.now()))

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
        """Commit what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
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
                self._process_batch([(topic, payload) for topic, payload, _ in batch])
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

    def _gather(self, first: tuple[str, bytes, datetime]) -> tuple[list[tuple[str, bytes, datetime]], bool]:
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

    def _process_batch(self, batch: list[tuple[str, bytes]]) -> None:
        if self._writer is None:
            self.process(batch)
            return
        outcome = self._writer.process(batch, self._clock.now())
        for name, change in outcome.counts.items():
            setattr(self.stats, name, getattr(self.stats, name) + change)
        self.stats.rejected.update(outcome.rejected)
        self.stats.batch_sizes.observe(outcome.batch_size)
        if outcome.commit_seconds is not None:
            self.stats.last_commit_ms = outcome.commit_seconds * 1000
            self.stats.commit_seconds.observe(outcome.commit_seconds)
        for ack in outcome.acks:
            self._acknowledge(ack)
        if outcome.error is not None:
            raise WriterError(outcome.error)

    def process(self, batch: list[tuple[str, bytes]]) -> None:
        """Validate, store and acknowledge one batch of (topic, payload) messages, in this process."""
        received_at = self._clock.now()
        self.stats.received += len(batch)
        self.stats.batch_sizes.observe(len(batch))
        self._rejections = []
        events: dict[tuple[str, int], Event] = {}
        clashes: set[tuple[str, int]] = set()
        presence: dict[str, dict[str, Any]] = {}
        for topic, payload in batch:
            device_id: str | None = None
            try:
                where = topics.parse(topic)
                device_id = where.device_id
                if where.channel is topics.Channel.EVENTS:
                    decoded, reasons = decode_events(payload)
                    for reason in reasons:
                        self._reject(RejectReason.INVALID_PAYLOAD, topic, reason, payload, device_id)
                    for event in decoded:
                        if event.device_id != where.device_id:
                            self._reject(
                                RejectReason.DEVICE_MISMATCH,
                                topic,
                                f"payload names device {event.device_id!r}",
                                encode(event),
                                device_id,
                            )
                        else:
                            self._collect(events, clashes, event)
                elif where.channel is topics.Channel.AVAILABILITY:
                    state = decode_availability(payload)
                    presence.setdefault(where.device_id, {})["online"] = state.state == "online"
                elif where.channel is topics.Channel.TELEMETRY:
                    report = decode_telemetry(payload)
                    presence.setdefault(where.device_id, {}).update(
                        outbox_depth=report.outbox_depth, last_seen_at=report.occurred_at
                    )
                else:
                    self._reject(
                        RejectReason.UNEXPECTED_TOPIC,
                        topic,
                        "devices do not publish on this channel",
                        payload,
                        device_id,
                    )
            except InvalidTopic as exc:
                self._reject(RejectReason.INVALID_TOPIC, topic, str(exc), payload, None)
            except InvalidMessage as exc:
                self._reject(RejectReason.INVALID_PAYLOAD, topic, exc.reason, payload, device_id)
        if not events and not presence:
            # Nothing to store but dead letters: they get a transaction of their own.
            self._count_dead_letters(self._dead_letters.write_alone(self._dead_letter_rows(received_at)))
            return
        started = time.perf_counter()
        devices = {d for d, _ in events} | presence.keys()

        def commit() -> tuple[dict[str, str], dict[str, list[int]], bool]:
            with Session(self._engine) as session:
                households = self._households_of(session, devices)
                accepted = self._accept(list(events.values()), households)
                acked = self._store(session, accepted, clashes)
                self._update_presence(session, {d: v for d, v in presence.items() if d in households})
                # Last, under a savepoint: should this fail, only the dead letters are rolled back.
                written = self._dead_letters.write(session, self._dead_letter_rows(received_at))
                session.commit()
            return households, acked, written

        try:
            households, acked, dead_letters_written = commit()
        except IntegrityError:
            # A cached household may be gone: an erasure moves its fridges to another. Read again.
            for device in devices:
                self._households.pop(device, None)
            households, acked, dead_letters_written = commit()
        # Only what is committed may be cached: a failed batch leaves no enrolment behind.
        self._households.update(households)
        elapsed = time.perf_counter() - started
        self.stats.last_commit_ms = elapsed * 1000
        self.stats.commit_seconds.observe(elapsed)
        self.stats.batches += 1
        self._count_dead_letters(dead_letters_written)
        for acked_device, seqs in acked.items():
            self._acknowledge(EventsAcknowledged(device_id=acked_device, ranges=seq_ranges(seqs)))

    def _dead_letter_rows(self, received_at: datetime) -> list[dict[str, Any]]:
        return [dead_letter_row(rejection, received_at) for rejection in self._rejections]

    def _count_dead_letters(self, written: bool) -> None:
        """Count the batch's dead letters once their transaction committed, or the failed write."""
        if not self._rejections:
            return
        if written:
            self.stats.dead_letters += len(self._rejections)
        else:
            self.stats.dead_letter_failures += 1
        self._rejections = []

    def _collect(
        self, events: dict[tuple[str, int], Event], clashes: set[tuple[str, int]], event: Event
    ) -> None:
        """Add ``event`` to the batch; a copy of one already in it is a duplicate, a clash a conflict."""
        key = (event.device_id, event.seq)
        earlier = events.get(key)
        if earlier is None:
            events[key] = event
        elif earlier.event_id == event.event_id:
            self.stats.duplicates += 1
        else:
            # Which of the two the device still holds is unknown: acknowledge neither now. The
            # device sends its own again; the next batch acks it if stored, or refuses it.
            clashes.add(key)
            self._reject_conflict(event, earlier.event_id)

    def _reject_conflict(self, event: Event, holder: object) -> None:
        # Two events under one (device, seq): the device's database was reset and its seq restarted.
        # Not acknowledged, so the device keeps the event; an operator must re-enrol the device.
        self._reject(
            RejectReason.SEQ_CONFLICT,
            topics.events(event.device_id),
            f"seq {event.seq} already holds event {holder}, not {event.event_id}; the device's database "
            "was reset: re-enrol it under a new device id",
            encode(event),
            event.device_id,
        )

    def _reject(
        self, reason: RejectReason, topic: str, detail: str, payload: bytes, device_id: str | None
    ) -> None:
        """Count and log one refused message (or event) and keep it as a dead letter of the batch."""
        self.stats.rejected[reason.value] += 1
        self._rejections.append(Rejection(reason.value, topic, device_id, detail, payload))
        log.warning(
            "rejected message on %s (%s): %s",
            topic,
            reason.value,
            detail,
            extra={"topic": topic, "reason": reason.value, "device_id": device_id},
        )

    def _households_of(self, session: Session, device_ids: set[str]) -> dict[str, str]:
        """Return the household of each known device, enrolling unknown ones if allowed."""
        households = {d: self._households[d] for d in device_ids if d in self._households}
        unknown = device_ids - households.keys()
        if unknown:
            households.update(self._stored_households(session, unknown))
            missing = unknown - households.keys()
            if missing and self._auto_enroll:
                self._enroll(session, missing)
                households.update(self._stored_households(session, missing))
        return households

    def _stored_households(self, session: Session, device_ids: set[str]) -> dict[str, str]:
        rows = session.execute(
            select(DEVICES.c.id, DEVICES.c.household_id).where(DEVICES.c.id.in_(device_ids))
        ).all()
        return {str(device_id): str(household_id) for device_id, household_id in rows}

    def _accept(self, events: list[Event], households: dict[str, str]) -> list[_Accepted]:
        accepted = []
        for event in events:
            household_id = households.get(event.device_id)
            if household_id is None:
                self._reject(
                    RejectReason.UNKNOWN_DEVICE,
                    topics.events(event.device_id),
                    "device is not enrolled",
                    encode(event),
                    event.device_id,
                )
            else:
                accepted.append(_Accepted(event, household_id))
        return accepted

    def _enroll(self, session: Session, device_ids: set[str]) -> None:
        now = self._clock.now()
        households = [
            {"id": household_id_for(d), "name": f"Household of fridge {d}", "created_at": now}
            for d in sorted(device_ids)
        ]
        devices = [
            {"id": d, "household_id": household_id_for(d), "created_at": now, "online": True}
            for d in sorted(device_ids)
        ]
        # Insert-or-ignore: another worker may have enrolled the device first.
        session.execute(self._insert_households, households)
        session.execute(self._insert_devices, devices)
        log.info("enrolled %d new devices, each in its own household", len(device_ids))

    def _store(
        self, session: Session, accepted: list[_Accepted], clashes: set[tuple[str, int]]
    ) -> dict[str, list[int]]:
        """Insert the events, skipping stored ones; return the seqs to acknowledge per device."""
        if not accepted:
            return {}
        now = self._clock.now()
        accepted = _in_seq_order(accepted)
        rows = [_row(item.event, item.household_id, now) for item in accepted]
        inserted = bulk_insert_ignoring(session, EVENTS, rows)
        self.stats.stored += inserted
        conflicts = set(clashes)
        if inserted < len(rows):
            # Some were stored before (redelivery) or clash: look only then, it costs a query.
            conflicts |= self._conflicts(session, [item.event for item in accepted])
        self.stats.duplicates += len(rows) - inserted - len(conflicts - clashes)
        acked: dict[str, list[int]] = {}
        for item in accepted:
            key = (item.event.device_id, item.event.seq)
            if key not in conflicts:
                acked.setdefault(item.event.device_id, []).append(item.event.seq)
        return acked

    def _conflicts(self, session: Session, events: list[Event]) -> set[tuple[str, int]]:
        """Return the (device, seq) keys stored for a different event, and reject those events."""
        keys = [(e.device_id, e.seq) for e in events]
        rows = session.execute(
            select(EVENTS.c.device_id, EVENTS.c.seq, EVENTS.c.event_id).where(
                tuple_(EVENTS.c.device_id, EVENTS.c.seq).in_(keys)
            )
        ).all()
        stored = {(device_id, seq): event_id for device_id, seq, event_id in rows}
        conflicts = set()
        for event in events:
            key = (event.device_id, event.seq)
            holder = stored.get(key)
            if holder == event.event_id:
                continue
            conflicts.add(key)
            if holder is None:
                # Skipped for its event_id, stored under another (device, seq): a forged or corrupt id.
                self._reject(
                    RejectReason.EVENT_ID_CONFLICT,
                    topics.events(event.device_id),
                    f"event id {event.event_id} (seq {event.seq}) is already stored for another seq",
                    encode(event),
                    event.device_id,
                )
            else:
                self._reject_conflict(event, holder)
        return conflicts

    def _update_presence(self, session: Session, presence: dict[str, dict[str, Any]]) -> None:
        for device_id, values in presence.items():
            session.execute(update(DEVICES).where(DEVICES.c.id == device_id).values(**values))


def _in_seq_order(accepted: list[_Accepted]) -> list[_Accepted]:
    """Return the batch with each device's events in seq order, in the places its events held.

    MQTT clients may reorder a few messages around a reconnect (paho resends its in-flight ones),
    and readers expect a device's events in order; devices keep their order of arrival.
    """
    places: dict[str, list[int]] = {}
    for index, item in enumerate(accepted):
        places.setdefault(item.event.device_id, []).append(index)
    ordered = list(accepted)
    for indices in places.values():
        events = sorted((accepted[i] for i in indices), key=lambda item: item.event.seq)
        for index, item in zip(indices, events, strict=True):
            ordered[index] = item
    return ordered


def stock_change(event: Event) -> tuple[str | None, float]:
    """Return the product an event concerns and how much it changes its stock (signed)."""
    match event:
        case ItemAdded(code=code, quantity=quantity):
            return code, quantity
        case ItemConsumed(code=code, quantity=quantity) | ItemDiscarded(code=code, quantity=quantity):
            return code, -quantity
        case ItemOpened(code=code) | ItemMoved(code=code):
            return code, 0.0
        case _:
            return None, 0.0


def _row(event: Event, household_id: str, received_at: datetime) -> dict[str, Any]:
    code, delta = stock_change(event)
    return {
        "event_id": event.event_id,
        "device_id": event.device_id,
        "seq": event.seq,
        "household_id": household_id,
        "type": event.type,
        "code": code,
        "quantity_delta": delta,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "payload": event.model_dump_json(),
    }
