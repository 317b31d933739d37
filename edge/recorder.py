"""Record what happens in the fridge: local state changed and events appended, atomically.

Every public method is one transaction: the inventory (or offers, orders, alerts) changes and
the events describing it enter the outbox together, before anything is sent. Consent decides
which events are written at all; the outbox bound decides what happens when room runs out.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

from edge.consent import ConsentSettings, category_of
from edge.database import transaction
from edge.errors import NothingToDo, NotInFridge
from edge.inventory import Inventory, Lot, due_after_opening
from edge.offers import Offers
from edge.orders import Orders
from edge.outbox import Outbox
from edge.scangrammar import Action, Discard, Move, Open, Scan
from edge.telemetry import TelemetryBuffer
from shared.clock import Clock
from shared.messages import (
    AlertCleared,
    AlertKind,
    AlertRaised,
    ConfigApplied,
    ConsentChanged,
    DataWiped,
    Event,
    EventBase,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
    Location,
    OfferAnswered,
    OrderAnswered,
    OutboxPressure,
    TelemetryReported,
    encode,
    seq_ranges,
)

# Warn when the outbox is this full, and say "recovered" once it is back below the lower mark.
WARNING_FILL = 0.8
RECOVERED_FILL = 0.7
# Quantities below this are rounding noise, not food.
EPSILON = 1e-9

_PRESSURE_LEVELS = {0: "none", 1: "warning", 2: "full"}


class Recorder:
    """Apply actions to the fridge's state and append their events to the outbox."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        device_id: str,
        clock: Clock,
        *,
        consent: ConsentSettings | None = None,
        capacity: int = 200_000,
    ) -> None:
        self._conn = conn
        self._device_id = device_id
        self._clock = clock
        self.consent = consent or ConsentSettings()
        self.capacity = capacity
        self.inventory = Inventory(conn)
        self.outbox = Outbox(conn)
        self.telemetry = TelemetryBuffer(conn)
        self.offers = Offers(conn)
        self.orders = Orders(conn)

    # actions from the scanner ----------------------------------------------------------------

    def apply(self, action: Action) -> list[Event]:
        """Record one scanner action; return the events it produced (may be none under consent)."""
        match action:
            case Scan(code=code, delta=delta) if delta > 0:
                return self.add(code)
            case Scan(code=code, delta=delta):
                return self.consume(code, -delta)
            case Open(code=code):
                return self.open(code)
            case Discard(code=code, reason=reason):
                return self.discard(code, reason)
            case Move(code=code, location=location):
                return self.move(code, location)
        raise AssertionError(f"unhandled action {action!r}")

    def add(self, code: str, quantity: float | None = None) -> list[Event]:
        """Put a new lot of ``code`` (one pack unless ``quantity`` says) into the fridge.

        A scan-in that matches a line of an order on its way reconciles it.
        """
        with transaction(self._conn):
            now = self._clock.now()
            product = self.inventory.product(code)
            quantity = self._pack(code) if quantity is None else quantity
            best_before = (
                now.date() + timedelta(days=product.shelf_life_days)
                if product.shelf_life_days is not None
                else None
            )
            order_id = self.orders.receive(code)
            lot_id = self.inventory.add_lot(
                code, quantity, product.unit, product.location, best_before, now, order_id
            )
            event = self._emit(
                ItemAdded,
                code=code,
                lot_id=lot_id,
                quantity=quantity,
                unit=product.unit,
                location=product.location,
                best_before=best_before,
                order_id=UUID(order_id) if order_id else None,
            )
        return [event] if event else []

    def consume(self, code: str, units: int = 1) -> list[Event]:
        """Take ``units`` units of ``code`` out and use them, each from the first lot in consumption
        order (opened, then earliest due, then first in).

        One unit is one pack; a lot holding less than a pack (the shelves saw it partly used) is
        finished by one unit's scan, rather than taking the rest from the next lot.
        """
        with transaction(self._conn):
            if not self.inventory.lots_of(code):
                raise NotInFridge(code)
            pack = self._pack(code)
            events: list[Event] = []
            for _ in range(units):
                lots = self.inventory.lots_of(code)
                if not lots:
                    break
                events += self._consume_lot(lots[0], min(lots[0].quantity, pack), "scan")
        return events

    def _pack(self, code: str) -> float:
        """Return one unit of ``code`` in its lots' unit: 1, or a pack's grams or millilitres."""
        product = self.inventory.product(code)
        if product.unit == "unit":
            return 1.0
        return product.pack_size or product.unit_grams or 1.0

    def consume_lot(self, lot_id: int, quantity: float) -> list[Event]:
        """Use part of one lot, as a weight shelf measured it."""
        with transaction(self._conn):
            lot = self.inventory.lot(lot_id)
            if lot is None or lot.quantity <= EPSILON:
                return []
            return self._consume_lot(lot, min(quantity, lot.quantity), "weight")

    def _consume_lot(self, lot: Lot, taken: float, source: str) -> list[Event]:
        left = self.inventory.take(lot.id, taken)
        if not self.consent.allows("consumption_detail"):
            # Minimised: partial uses stay home until the lot is finished; then one use, by the day.
            withheld = self.inventory.withhold(lot.id, taken)
            if left > EPSILON and source == "weight":
                return []
            self.inventory.release_withheld(lot.id)
            event = self._emit(
                ItemConsumed,
                code=lot.code,
                lot_id=lot.id,
                quantity=withheld,
                unit=lot.unit,
                source=source,
                occurred_at=datetime.combine(self._clock.now().date(), time(), UTC),
            )
        else:
            event = self._emit(
                ItemConsumed, code=lot.code, lot_id=lot.id, quantity=taken, unit=lot.unit, source=source
            )
        return [event] if event else []

    def open(self, code: str) -> list[Event]:
        """Open the next unopened lot of ``code``; its due date shortens."""
        with transaction(self._conn):
            lots = self.inventory.lots_of(code)
            lot = next((lot for lot in lots if lot.opened_at is None), None)
            if lot is None:
                raise NotInFridge(code) if not lots else NothingToDo(f"every lot of {code} is open already")
            now = self._clock.now()
            due = due_after_opening(self.inventory.product(code), lot, now.date())
            self.inventory.open(lot.id, now, due)
            event = self._emit(ItemOpened, code=code, lot_id=lot.id, best_before=due)
        return [event] if event else []

    def move(self, code: str, location: Location) -> list[Event]:
        """Move the next lot of ``code`` that is elsewhere to ``location``."""
        with transaction(self._conn):
            lots = self.inventory.lots_of(code)
            lot = next((lot for lot in lots if lot.location != location), None)
            if lot is None:
                raise (
                    NotInFridge(code)
                    if not lots
                    else NothingToDo(f"every lot of {code} is in the {location}")
                )
            self.inventory.move(lot.id, location)
            event = self._emit(
                ItemMoved, code=code, lot_id=lot.id, from_location=lot.location, to_location=location
            )
        return [event] if event else []

    def discard(self, code: str, reason: str, lot_id: int | None = None) -> list[Event]:
        """Throw away the next lot of ``code`` (or lot ``lot_id``), all of what is left of it."""
        with transaction(self._conn):
            lots = self.inventory.lots_of(code)
            lot = next((lot for lot in lots if lot_id is None or lot.id == lot_id), None)
            if lot is None:
                raise NotInFridge(code)
            events = self._report_withheld(lot)
            self.inventory.take(lot.id, lot.quantity)
            event = self._emit(
                ItemDiscarded, code=code, lot_id=lot.id, quantity=lot.quantity, unit=lot.unit, reason=reason
            )
        return events + ([event] if event else [])

    def _report_withheld(self, lot: Lot) -> list[Event]:
        """Report use held back under consent before the lot leaves by another way (thrown away)."""
        if lot.withheld <= EPSILON:
            return []
        self.inventory.release_withheld(lot.id)
        event = self._emit(
            ItemConsumed,
            code=lot.code,
            lot_id=lot.id,
            quantity=lot.withheld,
            unit=lot.unit,
            source="weight",
            occurred_at=datetime.combine(self._clock.now().date(), time(), UTC),
        )
        return [event] if event else []

    # everything else that becomes an event ------------------------------------------------------

    def alert_raised(
        self,
        kind: AlertKind,
        subject: str,
        detail: str,
        since: datetime,
        perishable_codes: tuple[str, ...] = (),
    ) -> Event | None:
        """Keep an alert visible locally and report it."""
        with transaction(self._conn):
            self._conn.execute(
                "INSERT OR REPLACE INTO alerts (subject, kind, detail, since) VALUES (?, ?, ?, ?)",
                (subject, kind, detail, since.isoformat()),
            )
            return self._emit(
                AlertRaised,
                kind=kind,
                subject=subject,
                detail=detail,
                since=since,
                perishable_codes=perishable_codes,
            )

    def alert_cleared(self, kind: AlertKind, subject: str) -> Event | None:
        """Remove an alert and report that it no longer holds."""
        with transaction(self._conn):
            self._conn.execute("DELETE FROM alerts WHERE subject = ?", (subject,))
            return self._emit(AlertCleared, kind=kind, subject=subject)

    def active_alerts(self) -> list[tuple[str, str, str, str]]:
        """Return (kind, subject, detail, since) of the alerts that hold now."""
        rows = self._conn.execute("SELECT kind, subject, detail, since FROM alerts ORDER BY since").fetchall()
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def answer_offer(self, offer_id: UUID, answer: str) -> Event | None:
        """Record the household's answer to an offer and send it."""
        with transaction(self._conn):
            if self.offers.get(offer_id) is None:
                raise LookupError(f"no offer {offer_id} on this fridge: `frigo edge offers` lists them")
            self.offers.answer(offer_id, answer)
            return self._emit(OfferAnswered, offer_id=offer_id, answer=answer)

    def answer_order(self, order_id: UUID, answer: str) -> Event | None:
        """Record the household's answer to a basket or an order and send it."""
        with transaction(self._conn):
            status = self.orders.status(order_id)
            if status is None:
                raise LookupError(f"no order {order_id} on this fridge: `frigo edge orders` lists them")
            return self._emit(OrderAnswered, order_id=order_id, answer=answer)

    def change_consent(self, recipient: str, purpose: str, action: str) -> Event | None:
        """Record the household granting or withdrawing a company's consent, and send it."""
        with transaction(self._conn):
            return self._emit(ConsentChanged, recipient=recipient, purpose=purpose, action=action)

    def config_applied(self, version: int, error: str | None, settings: str | None = None) -> Event | None:
        """Report the outcome of a desired configuration; keep applied ``settings`` (JSON) for restarts."""
        with transaction(self._conn):
            if error is None and settings is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO remote_config (id, version, settings) VALUES (1, ?, ?)",
                    (version, settings),
                )
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('config_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (version,),
            )
            return self._emit(
                ConfigApplied, version=version, status="rejected" if error else "applied", error=error
            )

    def remote_config(self) -> str | None:
        """Return the last applied desired configuration's settings (JSON), if any."""
        row = self._conn.execute("SELECT settings FROM remote_config WHERE id = 1").fetchone()
        return str(row[0]) if row else None

    def applied_config_version(self) -> int:
        """Return the last desired-configuration version handled (0 if none)."""
        return self._meta("config_version")

    def wipe(self, request_id: UUID) -> Event | None:
        """Erase every local record of the household, keeping only the sequence counter."""
        with transaction(self._conn):
            discarded = self.outbox.clear()
            self.inventory.clear()
            self.offers.clear()
            self.orders.clear()
            self._conn.execute("DELETE FROM telemetry")
            self._conn.execute("DELETE FROM alerts")
            return self._emit(DataWiped, request_id=request_id, discarded=seq_ranges(discarded))

    def telemetry_sample(self, sample: TelemetryReported) -> bool:
        """Keep a telemetry sample for publishing; False if consent excludes telemetry."""
        if not self.consent.allows("telemetry"):
            return False
        with transaction(self._conn):
            if not self._make_room(for_event=False):
                return False
            self.telemetry.add(encode(sample), self._clock.now())
        return True

    # the outbox bound -------------------------------------------------------------------------

    def depth(self) -> int:
        """Return the outbox's fill, events and telemetry samples together (an upper bound)."""
        return self.outbox.span() + self.telemetry.depth()

    def pressure(self) -> tuple[str, int, int]:
        """Return the pressure level, events dropped and telemetry samples coalesced so far."""
        return (
            _PRESSURE_LEVELS[self._meta("pressure_level")],
            self._meta("dropped_events"),
            self._meta("coalesced_telemetry"),
        )

    def check_recovered(self) -> Event | None:
        """Report once the outbox has drained below the recovery mark after pressure."""
        if self._meta("pressure_level") == 0 or self.depth() >= RECOVERED_FILL * self.capacity:
            return None
        with transaction(self._conn):
            self._set_meta("pressure_level", 0)
            return self._pressure_event("recovered")

    def _make_room(self, *, for_event: bool = True) -> bool:
        """Ensure one more row fits, coalescing telemetry first; False if the row must be dropped."""
        depth = self.depth()
        if depth >= WARNING_FILL * self.capacity and self._meta("pressure_level") == 0:
            self._set_meta("pressure_level", 1)
            self._pressure_event("warning")
        if depth < self.capacity:
            return True
        thinned = self.telemetry.thin() if self.telemetry.depth() else 0
        if thinned:
            self._set_meta("coalesced_telemetry", self._meta("coalesced_telemetry") + thinned)
            if self.depth() < self.capacity:
                return True
        if not for_event:
            # A sample with no room left is one more coalesced away; events are what count as drops.
            self._set_meta("coalesced_telemetry", self._meta("coalesced_telemetry") + 1)
            return False
        self._set_meta("dropped_events", self._meta("dropped_events") + 1)
        if self._meta("pressure_level") < 2:
            self._set_meta("pressure_level", 2)
            self._pressure_event("full")
        return False

    def _pressure_event(self, level: str) -> Event:
        # Pressure reports bypass the bound: they are what tells the cloud something was dropped.
        return self._append(
            OutboxPressure,
            level=level,
            depth=self.depth(),
            capacity=self.capacity,
            dropped_events=self._meta("dropped_events"),
            coalesced_telemetry=self._meta("coalesced_telemetry"),
        )

    # the one way into the outbox ---------------------------------------------------------------

    def _emit(self, event_type: type[EventBase], /, **fields: Any) -> Event | None:
        """Append an event if consent allows it and room exists; call inside a transaction."""
        if not self.consent.allows(category_of(event_type.model_construct(**fields))):  # type: ignore[arg-type]
            return None
        if not self._make_room():
            return None
        return self._append(event_type, **fields)

    def _append(self, event_type: type[EventBase], /, **fields: Any) -> Event:
        seq = self.outbox.next_seq()
        now = self._clock.now()
        fields.setdefault("occurred_at", now)
        event: Event = event_type(event_id=uuid4(), device_id=self._device_id, seq=seq, **fields)  # type: ignore[assignment]
        self.outbox.append(seq, encode(event), now)
        return event

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
