"""Factories for wire messages, so tests state only what matters to them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared import topics
from shared.messages import ItemAdded, ItemConsumed, encode

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_IDS = uuid.UUID("6f1c2b1e-8d1a-4c55-9a39-0c4f3c0a7b01")

# (topic, payload), with True third when the broker delivered it as a retained message.
Message = tuple[str, bytes] | tuple[str, bytes, bool]
StockEvent = ItemAdded | ItemConsumed


def event_id(device_id: str, seq: int, variant: str = "") -> uuid.UUID:
    """Return a stable event id: the same (device, seq) gives the same id unless ``variant`` differs."""
    return uuid.uuid5(_IDS, f"{device_id}/{seq}/{variant}")


def added(device_id: str, seq: int, code: str = "MILK", quantity: int = 1, variant: str = "") -> ItemAdded:
    """Return an ItemAdded that happened ``seq`` seconds after T0."""
    return ItemAdded(
        event_id=event_id(device_id, seq, variant),
        device_id=device_id,
        seq=seq,
        lot_id=seq,
        occurred_at=T0 + timedelta(seconds=seq),
        code=code,
        quantity=quantity,
    )


def removed(
    device_id: str, seq: int, code: str = "MILK", quantity: int = 1, variant: str = ""
) -> ItemConsumed:
    """Return an ItemConsumed that happened ``seq`` seconds after T0."""
    return ItemConsumed(
        event_id=event_id(device_id, seq, variant),
        device_id=device_id,
        seq=seq,
        lot_id=seq,
        occurred_at=T0 + timedelta(seconds=seq),
        code=code,
        quantity=quantity,
    )


def msg(event: StockEvent) -> tuple[str, bytes]:
    """Return the (topic, payload) a device would publish ``event`` as."""
    return topics.events(event.device_id), encode(event)
