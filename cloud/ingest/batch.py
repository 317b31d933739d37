"""One batch of device messages: validate it, enrol new devices, store each event once, acknowledge.

A unique key on (device, seq) with insert-or-ignore makes redelivery harmless. A message that is
refused is logged with the reason, counted and kept as a dead letter (``cloud/ingest/deadletters.py``);
it never stops the batch. The acknowledgements of a batch are returned only once it has committed,
so a device forgets nothing the cloud could still lose.

:class:`BatchProcessor` runs in the worker (``cloud/ingest/ingestor.py``) or in its writer process
(``cloud/ingest/writer.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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

# A message as the broker delivered it: (topic, payload), with True third when it came retained (the
# broker stored it and sent it at subscription time, perhaps long after it was published).
Message = tuple[str, bytes] | tuple[str, bytes, bool]
# Channels a device streams to the cloud: a retained message there is never ingested (a device's
# retained availability is how the broker tells its state, and is read).
STREAMS = (topics.Channel.EVENTS, topics.Channel.TELEMETRY)


@dataclass(frozen=True, slots=True)
class _Accepted:
    event: Event
    household_id: str


@dataclass(slots=True)
class _Contents:
    """What a batch has to store: its events by (device, seq), the clashing keys, device presence."""

    events: dict[tuple[str, int], Event] = field(default_factory=dict)
    clashes: set[tuple[str, int]] = field(default_factory=set)
    presence: dict[str, dict[str, Any]] = field(default_factory=dict)


class BatchProcessor:
    """Validate, store and acknowledge batches of device messages, counting in ``stats``."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        stats: IngestStats,
        *,
        auto_enroll: bool = True,
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.stats = stats
        self._auto_enroll = auto_enroll
        self._insert_households = insert_ignoring_duplicates(engine, HOUSEHOLDS)
        self._insert_devices = insert_ignoring_duplicates(engine, DEVICES)
        self._households: dict[str, str] = {}  # device id -> household id, for known devices
        self._dead_letters = DeadLetterStore(engine, max_dead_letters)
        self._rejections: list[Rejection] = []  # of the batch being processed

    def process(self, batch: Sequence[Message]) -> list[EventsAcknowledged]:
        """Validate and store one batch of (topic, payload) messages; return the acknowledgements."""
        received_at = self._clock.now()
        self.stats.received += len(batch)
        self.stats.batch_sizes.observe(len(batch))
        self._rejections = []
        contents = _Contents()
        for topic, payload, *retained in batch:
            self._read_isolated(contents, topic, payload, retained=bool(retained and retained[0]))
        if not contents.events and not contents.presence:
            # Nothing to store but dead letters: they get a transaction of their own.
            self._count_dead_letters(self._dead_letters.write_alone(self._dead_letter_rows(received_at)))
            return []
        return self._commit(contents, received_at)

    def _read_isolated(self, contents: _Contents, topic: str, payload: bytes, *, retained: bool) -> None:
        """Read one message; whatever it holds, it ends in ``contents`` or as a dead letter."""
        try:
            self._read(contents, topic, payload, retained=retained)
        except Exception as exc:
            # A message no check foresaw must not fail the batch (and every other device's events
            # in it): it is kept as a dead letter, and the traceback logged for a fix.
            log.exception("could not read a message on %s; kept as a dead letter", topic[:200])
            detail = f"could not be read: {type(exc).__name__}: {exc}"[:500]
            self._reject(RejectReason.INVALID_PAYLOAD, topic, detail, payload, None)

    def _read(self, contents: _Contents, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Add one message's events or presence to ``contents``, or reject it (or events in it)."""
        device_id: str | None = None
        try:
            where = topics.parse(topic)
            device_id = where.device_id
            if retained and where.channel in STREAMS:
                self._reject(
                    RejectReason.RETAINED,
                    topic,
                    "retained on a device's stream: not ingested (the cloud clears it)",
                    payload,
                    device_id,
                )
            elif where.channel is topics.Channel.EVENTS:
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
                        self._collect(contents, event)
            elif where.channel is topics.Channel.AVAILABILITY:
                state = decode_availability(payload)
                contents.presence.setdefault(where.device_id, {})["online"] = state.state == "online"
            elif where.channel is topics.Channel.TELEMETRY:
                report = decode_telemetry(payload)
                contents.presence.setdefault(where.device_id, {}).update(
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

    def _commit(self, contents: _Contents, received_at: datetime) -> list[EventsAcknowledged]:
        """Store the batch and its dead letters in one transaction; return the acknowledgements."""
        started = time.perf_counter()
        devices = {d for d, _ in contents.events} | contents.presence.keys()
        try:
            households, acked, dead_letters_written = self._transaction(contents, devices, received_at)
        except IntegrityError:
            # A cached household may be gone: an erasure moves its fridges to another. Read again.
            for device in devices:
                self._households.pop(device, None)
            households, acked, dead_letters_written = self._transaction(contents, devices, received_at)
        # Only what is committed may be cached: a failed batch leaves no enrolment behind.
        self._households.update(households)
        self.stats.observe_commit(time.perf_counter() - started)
        self.stats.batches += 1
        self._count_dead_letters(dead_letters_written)
        return [EventsAcknowledged(device_id=d, ranges=seq_ranges(seqs)) for d, seqs in acked.items()]

    def _transaction(
        self, contents: _Contents, devices: set[str], received_at: datetime
    ) -> tuple[dict[str, str], dict[str, list[int]], bool]:
        """Return the devices' households, the seqs to acknowledge and whether dead letters were written."""
        with Session(self._engine) as session:
            households = self._households_of(session, devices)
            accepted = self._accept(list(contents.events.values()), households)
            acked = self._store(session, accepted, contents.clashes)
            self._update_presence(session, {d: v for d, v in contents.presence.items() if d in households})
            # Last, under a savepoint: should this fail, only the dead letters are rolled back.
            written = self._dead_letters.write(session, self._dead_letter_rows(received_at))
            session.commit()
        return households, acked, written

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

    def _collect(self, contents: _Contents, event: Event) -> None:
        """Add ``event`` to the batch; a copy of one already in it is a duplicate, a clash a conflict."""
        key = (event.device_id, event.seq)
        earlier = contents.events.get(key)
        if earlier is None:
            contents.events[key] = event
        elif earlier.event_id == event.event_id:
            self.stats.duplicates += 1
        else:
            # Which of the two the device still holds is unknown: acknowledge neither now. The
            # device sends its own again; the next batch acks it if stored, or refuses it.
            contents.clashes.add(key)
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
        # Offline until the broker says otherwise: only a device's retained availability ("online"
        # from the device, "offline" from its Last Will) tells whether it is connected; an event may
        # come from anyone who can publish on its topic, or be a late redelivery.
        devices = [
            {"id": d, "household_id": household_id_for(d), "created_at": now, "online": False}
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
