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
from cloud.models import Device, Household, StoredEvent
from shared import topics
from shared.clock import Clock
from shared.errors import InvalidMessage, InvalidTopic
from shared.messages import (
    Event,
    EventsAcknowledged,
    ItemAdded,
    ItemRemoved,
    decode_availability,
    decode_event,
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
        self._insert_events = insert_ignoring_duplicates(engine, StoredEvent.__table__).returning(
            StoredEvent.__table__.c.device_id, StoredEvent.__table__.c.seq
        )
        self._insert_households = insert_ignoring_duplicates(engine, Household.__table__)
        self._insert_devices = insert_ignoring_duplicates(engine, Device.__table__)
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
                    item = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else (
                        self._queue.get_nowait()
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
        presence: dict[str, dict[str, Any]] = {}
        for topic, payload in batch:
            try:
                where = topics.parse(topic)
                if where.channel is topics.Channel.EVENTS:
                    event = decode_event(payload)
                    if event.device_id != where.device_id:
                        self._reject("device_mismatch", topic, f"payload names device {event.device_id!r}")
                        continue
                    events[(event.device_id, event.seq)] = event
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
            accepted = self._assign_households(session, list(events.values()))
            acked = self._store(session, accepted)
            self._update_presence(session, presence)
            session.commit()
        self.stats.last_commit_ms = (time.perf_counter() - started) * 1000
        self.stats.batches += 1
        for device_id, seqs in acked.items():
            self._acknowledge(EventsAcknowledged(device_id=device_id, ranges=seq_ranges(seqs)))

    def _reject(self, reason: str, topic: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected message on %s (%s): %s", topic, reason, detail)

    def _assign_households(self, session: Session, events: list[Event]) -> list[_Accepted]:
        unknown = {e.device_id for e in events} - self._households.keys()
        if unknown:
            rows = session.execute(
                select(Device.id, Device.household_id).where(Device.id.in_(unknown))  # type: ignore[attr-defined]
            ).all()
            self._households.update({device_id: household_id for device_id, household_id in rows})
            missing = unknown - self._households.keys()
            if missing and self._auto_enroll:
                self._enroll(session, missing)
        accepted = []
        for event in events:
            household_id = self._households.get(event.device_id)
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
        session.execute(self._insert_households, households)
        session.execute(self._insert_devices, devices)
        # Another worker may have enrolled the device first: read back what is stored.
        rows = session.execute(
            select(Device.id, Device.household_id).where(Device.id.in_(device_ids))  # type: ignore[attr-defined]
        ).all()
        self._households.update({device_id: household_id for device_id, household_id in rows})
        log.info("enrolled %d new devices, each in its own household", len(device_ids))

    def _store(self, session: Session, accepted: list[_Accepted]) -> dict[str, list[int]]:
        """Insert the events, skipping stored ones; return the seqs to acknowledge per device."""
        if not accepted:
            return {}
        now = self._clock.now()
        rows = [_row(item.event, item.household_id, now) for item in accepted]
        inserted = set(session.execute(self._insert_events, rows).tuples().all())
        self.stats.stored += len(inserted)
        skipped = [item.event for item in accepted if (item.event.device_id, item.event.seq) not in inserted]
        if skipped:
            self._check_duplicates(session, skipped)
        acked: dict[str, list[int]] = {}
        for item in accepted:
            acked.setdefault(item.event.device_id, []).append(item.event.seq)
        return acked

    def _check_duplicates(self, session: Session, skipped: list[Event]) -> None:
        """Count true redeliveries; log a (device, seq) reused by a different event loudly."""
        keys = [(e.device_id, e.seq) for e in skipped]
        table = StoredEvent.__table__
        stored = dict(
            ((device_id, seq), event_id)
            for device_id, seq, event_id in session.execute(
                select(table.c.device_id, table.c.seq, table.c.event_id).where(
                    tuple_(table.c.device_id, table.c.seq).in_(keys)
                )
            ).all()
        )
        for event in skipped:
            if stored.get((event.device_id, event.seq)) == event.event_id:
                self.stats.duplicates += 1
            else:
                # The device's database was reset and its seq restarted: the event cannot be stored
                # under a used seq. Counted and logged so an operator can re-provision the device.
                self._reject(
                    "seq_conflict",
                    topics.events(event.device_id),
                    f"seq {event.seq} already holds another event; reset the device's seq or "
                    "re-provision it",
                )

    def _update_presence(self, session: Session, presence: dict[str, dict[str, Any]]) -> None:
        for device_id, values in presence.items():
            if device_id in self._households or session.get(Device, device_id) is not None:
                session.execute(update(Device).where(Device.id == device_id).values(**values))  # type: ignore[arg-type]


def _row(event: Event, household_id: str, received_at: datetime) -> dict[str, Any]:
    if isinstance(event, ItemAdded):
        code, delta = event.code, event.quantity
    elif isinstance(event, ItemRemoved):
        code, delta = event.code, -event.quantity
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
