"""Ingestion: validate what devices publish, store each event once, then acknowledge it.

Messages from the broker are queued and committed in batches bounded by size and time. Only after
a batch commits does each device get an ``EventsAcknowledged`` for its events in it, so a device
forgets nothing the cloud could still lose. A unique key on (device, seq) with insert-or-ignore
makes redelivery harmless. A payload that does not validate is logged with the reason and
counted; it never stops ingestion.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, tuple_, update
from sqlmodel import Session

from cloud.database import insert_ignoring_duplicates
from cloud.models import DEVICES, EVENTS, HOUSEHOLDS
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
    seq_ranges,
)

log = logging.getLogger(__name__)

# Cap on buffered messages: when the database falls behind, paho's thread blocks here and the
# broker holds the rest, instead of this process growing without bound.
MAX_BUFFERED = 50_000


@dataclass
class IngestStats:
    """Counters since start; written by the ingest thread only."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    last_commit_ms: float = 0.0

    @property
    def rejected_total(self) -> int:
        """Return how many messages were rejected, for any reason."""
        return sum(self.rejected.values())


@dataclass(frozen=True, slots=True)
class _Accepted:
    event: Event
    household_id: str


def household_id_for(device_id: str) -> str:
    """Return the id of the household auto-enrolment creates for a device."""
    return f"hh-{device_id}"


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
    ) -> None:
        self._engine = engine
        self._acknowledge = acknowledge
        self._clock = clock
        self._batch_size = batch_size
        self._batch_interval_s = batch_interval_s
        self._auto_enroll = auto_enroll
        self._insert_events = insert_ignoring_duplicates(engine, EVENTS).returning(
            EVENTS.c.device_id, EVENTS.c.seq
        )
        self._insert_households = insert_ignoring_duplicates(engine, HOUSEHOLDS)
        self._insert_devices = insert_ignoring_duplicates(engine, DEVICES)
        self._households: dict[str, str] = {}  # device id -> household id, for known devices
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_BUFFERED)
        self._thread: threading.Thread | None = None
        self.stats = IngestStats()

    # Called from the MQTT network thread.
    def submit(self, topic: str, payload: bytes) -> None:
        """Queue one message from the broker for the next batch."""
        self._queue.put((topic, payload))

    def start(self) -> None:
        """Start the thread that commits batches."""
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._batch_interval_s
            stopping = False
            while len(batch) < self._batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=max(remaining, 0))
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self.process(batch)
            except Exception:
                # The devices still hold these events and send them again: log, keep going.
                log.exception("batch of %d messages failed; devices will resend them", len(batch))
                time.sleep(1.0)
            if stopping:
                return

    def process(self, batch: list[tuple[str, bytes]]) -> None:
        """Validate, store and acknowledge one batch of (topic, payload) messages."""
        self.stats.received += len(batch)
        events: dict[tuple[str, int], Event] = {}
        clashes: set[tuple[str, int]] = set()
        presence: dict[str, dict[str, Any]] = {}
        for topic, payload in batch:
            try:
                where = topics.parse(topic)
                if where.channel is topics.Channel.EVENTS:
                    decoded, reasons = decode_events(payload)
                    for reason in reasons:
                        self._reject("invalid_payload", topic, reason)
                    for event in decoded:
                        if event.device_id != where.device_id:
                            self._reject(
                                "device_mismatch", topic, f"payload names device {event.device_id!r}"
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
                    self._reject("unexpected_topic", topic, "devices do not publish on this channel")
            except InvalidTopic as exc:
                self._reject("invalid_topic", topic, str(exc))
            except InvalidMessage as exc:
                self._reject("invalid_payload", topic, exc.reason)
        if not events and not presence:
            return
        started = time.perf_counter()
        with Session(self._engine) as session:
            households = self._households_of(session, {d for d, _ in events} | presence.keys())
            accepted = self._accept(list(events.values()), households)
            acked = self._store(session, accepted, clashes)
            self._update_presence(session, {d: v for d, v in presence.items() if d in households})
            session.commit()
        # Only what is committed may be cached: a failed batch leaves no enrolment behind.
        self._households.update(households)
        self.stats.last_commit_ms = (time.perf_counter() - started) * 1000
        self.stats.batches += 1
        for device_id, seqs in acked.items():
            self._acknowledge(EventsAcknowledged(device_id=device_id, ranges=seq_ranges(seqs)))

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
            "seq_conflict",
            topics.events(event.device_id),
            f"seq {event.seq} already holds event {holder}, not {event.event_id}; the device's database "
            "was reset: re-enrol it under a new device id",
        )

    def _reject(self, reason: str, topic: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected message on %s (%s): %s", topic, reason, detail)

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
                self._reject("unknown_device", topics.events(event.device_id), "device is not enrolled")
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
        rows = [_row(item.event, item.household_id, now) for item in accepted]
        inserted = {(device_id, seq) for device_id, seq in session.execute(self._insert_events, rows)}
        self.stats.stored += len(inserted)
        skipped = [item.event for item in accepted if (item.event.device_id, item.event.seq) not in inserted]
        conflicts = clashes | (self._check_duplicates(session, skipped) if skipped else set())
        acked: dict[str, list[int]] = {}
        for item in accepted:
            key = (item.event.device_id, item.event.seq)
            if key not in conflicts:
                acked.setdefault(item.event.device_id, []).append(item.event.seq)
        return acked

    def _check_duplicates(self, session: Session, skipped: list[Event]) -> set[tuple[str, int]]:
        """Count true redeliveries; return the (device, seq) keys reused by a different event."""
        keys = [(e.device_id, e.seq) for e in skipped]
        rows = session.execute(
            select(EVENTS.c.device_id, EVENTS.c.seq, EVENTS.c.event_id).where(
                tuple_(EVENTS.c.device_id, EVENTS.c.seq).in_(keys)
            )
        ).all()
        stored = {(device_id, seq): event_id for device_id, seq, event_id in rows}
        conflicts = set()
        for event in skipped:
            key = (event.device_id, event.seq)
            holder = stored.get(key)
            if holder == event.event_id:
                self.stats.duplicates += 1
                continue
            conflicts.add(key)
            if holder is None:
                # Skipped for its event_id, stored under another (device, seq): a forged or corrupt id.
                self._reject(
                    "event_id_conflict",
                    topics.events(event.device_id),
                    f"event id {event.event_id} (seq {event.seq}) is already stored for another seq",
                )
            else:
                self._reject_conflict(event, holder)
        return conflicts

    def _update_presence(self, session: Session, presence: dict[str, dict[str, Any]]) -> None:
        for device_id, values in presence.items():
            session.execute(update(DEVICES).where(DEVICES.c.id == device_id).values(**values))


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
