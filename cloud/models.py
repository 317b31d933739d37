"""Database tables. API models live in ``cloud/schemas.py``; wire models in ``shared/messages.py``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class Household(SQLModel, table=True):
    """A home with one or more fridges."""

    __tablename__ = "households"

    id: str = Field(primary_key=True, max_length=80)
    name: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # How the planner's orders go out: automatic, approve (each order, the default) or suggest.
    planning_mode: str = Field(
        default="approve", max_length=16, sa_column_kwargs={"server_default": "approve"}
    )
    # The last planning cycle that planned this household (-1: never); a worker claims the rest.
    planned_cycle: int = Field(default=-1, sa_column_kwargs={"server_default": "-1"})


class Device(SQLModel, table=True):
    """A fridge, known by the device id it uses as MQTT username."""

    __tablename__ = "devices"

    id: str = Field(primary_key=True, max_length=64)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    online: bool = False
    last_seen_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    outbox_depth: int | None = None
    # argon2 hash of the device's MQTT secret; None for auto-enrolled devices (no broker credential).
    secret_hash: str | None = Field(default=None, max_length=200)
    # Mosquitto's own hash ($7$, PBKDF2-SHA512) of the same secret, for the broker's password file.
    broker_hash: str | None = Field(default=None, max_length=200)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class StoredEvent(SQLModel, table=True):
    """An event as committed, stored once per (device, seq)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("device_id", "seq", name="uq_events_device_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: uuid.UUID = Field(unique=True)
    device_id: str = Field(foreign_key="devices.id", max_length=64)
    seq: int
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    type: str = Field(max_length=40)
    code: str | None = Field(default=None, max_length=48)
    # Signed change of the product's stock: +n added, -n removed, 0 for events that move no stock.
    quantity_delta: float = 0.0
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))


class PlannedOrder(SQLModel, table=True):
    """A basket the planner made for a household in one planning cycle."""

    __tablename__ = "planned_orders"

    id: str = Field(primary_key=True, max_length=36)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    cycle: int
    # household:cycle: planning a cycle twice, or by two workers at once, makes one order.
    idempotency_key: str = Field(unique=True, max_length=120)
    status: str = Field(max_length=16, description="suggested, proposed, approved or cancelled")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Automatic orders can be cancelled until then.
    cancellable_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class PlannedOrderLine(SQLModel, table=True):
    """One product of a planned basket, and why."""

    __tablename__ = "planned_order_lines"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="planned_orders.id", index=True, max_length=36)
    code: str = Field(max_length=48)
    packs: int
    quantity: float = Field(description="In the product's unit: packs times the household's usual pack.")
    unit: str = Field(max_length=8)
    reason: str = Field(max_length=300)


class Retailer(SQLModel, table=True):
    """A grocery retailer that takes orders through the order API."""

    __tablename__ = "retailers"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RetailerKey(SQLModel, table=True):
    """An API key of a retailer: only its SHA-256 is kept, and a prefix to tell keys apart."""

    __tablename__ = "retailer_keys"

    id: int | None = Field(default=None, primary_key=True)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AccessToken(SQLModel, table=True):
    """A bearer token of a household (its own data only) or of an operator (admin): hashed."""

    __tablename__ = "access_tokens"

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(max_length=16, description="household or admin")
    household_id: str | None = Field(default=None, foreign_key="households.id", index=True, max_length=80)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class CatalogItem(SQLModel, table=True):
    """A product a retailer sells: its price and pack, as the retailer last said."""

    __tablename__ = "catalog_items"

    retailer_id: str = Field(foreign_key="retailers.id", primary_key=True, max_length=64)
    gtin: str = Field(primary_key=True, max_length=14)
    name: str = Field(max_length=200)
    price: float
    currency: str = Field(max_length=3)
    pack_size: float
    unit: str = Field(max_length=8)
    available: bool = True
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class DeadLetter(SQLModel, table=True):
    """A message that could not be ingested, kept (truncated) so an operator can see why."""

    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    topic: str = Field(max_length=300)
    device_id: str | None = Field(default=None, max_length=64, index=True)
    reason: str = Field(max_length=40, description="The rejection counter it was counted under.")
    detail: str = Field(sa_column=Column(Text, nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    payload_size: int = Field(description="Size before truncation, in bytes.")


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass
    assert isinstance(table, Table)
    return table


# The Core tables, for bulk statements (insert-or-ignore, aggregates) typed without ORM overhead.
HOUSEHOLDS = _table(Household)
DEVICES = _table(Device)
EVENTS = _table(StoredEvent)
DEAD_LETTERS = _table(DeadLetter)
PLANNED_ORDERS = _table(PlannedOrder)
RETAILERS = _table(Retailer)
RETAILER_KEYS = _table(RetailerKey)
CATALOG_ITEMS = _table(CatalogItem)
ACCESS_TOKENS = _table(AccessToken)
PLANNED_ORDER_LINES = _table(PlannedOrderLine)
