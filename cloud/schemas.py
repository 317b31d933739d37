"""Models of the HTTP API's responses, separate from tables and wire messages."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class DevicePublic(BaseModel):
    """A fridge as the API shows it."""

    id: str
    online: bool
    last_seen_at: datetime | None
    outbox_depth: int | None


class HouseholdPublic(BaseModel):
    """A household and its fridges."""

    id: str
    name: str
    devices: list[DevicePublic]


class InventoryItemPublic(BaseModel):
    """How many units of one product a household's fridges hold."""

    code: str
    quantity: float


class InventoryPublic(BaseModel):
    """What a household has, as the events stored so far say."""

    household_id: str
    items: list[InventoryItemPublic]
    event_count: int


class EventPublic(BaseModel):
    """One stored event."""

    id: int
    event_id: uuid.UUID
    device_id: str
    seq: int
    type: str
    code: str | None
    quantity_delta: float
    occurred_at: datetime
    received_at: datetime


class IngestStatsPublic(BaseModel):
    """Ingestion counters since the worker started."""

    received: int
    stored: int
    duplicates: int
    rejected: dict[str, int]
    batches: int
    last_commit_ms: float
    broker_connected: bool
