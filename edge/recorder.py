"""Turn a scan into an event, recorded durably before anything is sent."""

from __future__ import annotations

import sqlite3
from uuid import uuid4

from edge.database import transaction
from edge.errors import NotInFridge
from edge.inventory import Inventory
from edge.outbox import Outbox
from edge.scanner import Scan
from shared.clock import Clock
from shared.messages import Event, ItemAdded, ItemRemoved, encode


class Recorder:
    """Apply scans to the inventory and append their events to the outbox, atomically."""

    def __init__(self, conn: sqlite3.Connection, device_id: str, clock: Clock) -> None:
        self._conn = conn
        self._device_id = device_id
        self._clock = clock
        self.inventory = Inventory(conn)
        self.outbox = Outbox(conn)

    def record(self, scan: Scan) -> Event:
        """Record one scan in a single transaction and return its event."""
        with transaction(self._conn):
            if scan.delta < 0 and self.inventory.quantity(scan.code) < -scan.delta:
                raise NotInFridge(scan.code)
            seq = self.outbox.next_seq()
            now = self._clock.now()
            common = {"event_id": uuid4(), "device_id": self._device_id, "seq": seq, "occurred_at": now}
            event: Event
            if scan.delta > 0:
                event = ItemAdded(code=scan.code, quantity=scan.delta, **common)
            else:
                event = ItemRemoved(code=scan.code, quantity=-scan.delta, **common)
            self.inventory.apply(event)
            self.outbox.append(seq, encode(event), now)
        return event
