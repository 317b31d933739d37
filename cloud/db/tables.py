"""Database tables. API models live in ``cloud/api/schemas/``; wire models in ``shared/messages.py``."""

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
    # Where the household lives, for its quiet hours (IANA name).
    timezone: str = Field(default="UTC", max_length=64, sa_column_kwargs={"server_default": "UTC"})
    # The retailer its orders go to (None: orders stay proposals), and what a substitution the
    # retailer proposes becomes: ask (the household decides, the default), accept or refuse.
    retailer_id: str | None = Field(default=None, foreign_key="retailers.id", max_length=64)
    substitution_policy: str = Field(default="ask", max_length=16, sa_column_kwargs={"server_default": "ask"})


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
    # AUTOINCREMENT: SQLite otherwise gives a new row the id of the newest row deleted (an erasure's),
    # and readers that keep their place by id (cloud/commerce/answers.py, the live pages) would skip it.
    __table_args__ = (
        UniqueConstraint("device_id", "seq", name="uq_events_device_seq"),
        {"sqlite_autoincrement": True},
    )

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
    # Set when the key is made (cloud/identity/retailers.py says for how long).
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


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
    # Set when the token is made (cloud/identity/tokens.py says for how long).
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class WebSession(SQLModel, table=True):
    """A web page sign-in: the browser's cookie holds an opaque id, stored here only hashed.

    It stands for the credential signed in with (a token or a retailer key), which it checks at
    every request: revoking either ends it at once.
    """

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    token_id: int | None = Field(default=None, foreign_key="access_tokens.id", index=True)
    retailer_key_id: int | None = Field(default=None, foreign_key="retailer_keys.id", index=True)
    household_id: str | None = Field(default=None, max_length=80, description="The household signed in to.")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
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
    # The aisle, e.g. dairy: what "not this category" refers to in offers.
    category: str | None = Field(default=None, max_length=40)


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


class DeliverySlot(SQLModel, table=True):
    """A window in which a retailer delivers, with room for ``capacity`` orders."""

    __tablename__ = "delivery_slots"
    __table_args__ = (UniqueConstraint("retailer_id", "starts_at"),)

    id: str = Field(primary_key=True, max_length=36)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ends_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    capacity: int
    booked: int = 0


class Order(SQLModel, table=True):
    """A grocery order placed with a retailer; its status moves as ``cloud/commerce/orders.py`` allows."""

    __tablename__ = "orders"

    id: str = Field(primary_key=True, max_length=36)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    # The planner's basket it came from, if any: one order per basket.
    planned_order_id: str | None = Field(
        default=None, foreign_key="planned_orders.id", unique=True, max_length=36
    )
    slot_id: str | None = Field(default=None, foreign_key="delivery_slots.id", max_length=36)
    status: str = Field(max_length=24, index=True)
    # Raised by every change: the ETag, checked against If-Match.
    version: int = 1
    currency: str = Field(max_length=3)
    total: float
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class OrderLineRow(SQLModel, table=True):
    """One product of an order: what was ordered, what the retailer proposed instead, what came."""

    __tablename__ = "order_lines"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=36)
    gtin: str = Field(max_length=14)
    name: str = Field(max_length=200)
    quantity: int
    unit_price: float
    substitute_gtin: str | None = Field(default=None, max_length=14)
    substitute_name: str | None = Field(default=None, max_length=200)
    substitute_quantity: int | None = None
    # proposed, approved or rejected; None while nothing is proposed.
    substitution: str | None = Field(default=None, max_length=16)
    delivered_quantity: int | None = None


class OrderHistory(SQLModel, table=True):
    """Each change of an order's status: who made it, from what, to what, and why."""

    __tablename__ = "order_history"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=36)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    actor: str = Field(max_length=16, description="retailer, household, fridge or policy")
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str = Field(max_length=24)
    detail: str = Field(default="", max_length=500)


class IdempotencyKey(SQLModel, table=True):
    """A POST's Idempotency-Key and the first response it got, replayed for the same request."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    # Whose key: the SHA-256 of the bearer secret, so callers' keys never collide.
    principal: str = Field(max_length=64)
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64, description="SHA-256 of method, path and body.")
    status: str = Field(max_length=16, description="in_flight or done")
    response_code: int | None = None
    response_body: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    response_headers: str | None = Field(default=None, sa_column=Column(Text), description="JSON object.")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class WebhookEndpoint(SQLModel, table=True):
    """A retailer's URL that receives signed webhooks; two secrets verify during a rotation."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True, max_length=36)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    disabled_reason: str | None = Field(default=None, max_length=300)


class WebhookDelivery(SQLModel, table=True):
    """One message to one endpoint, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"

    id: str = Field(primary_key=True, max_length=40, description="The webhook-id header: msg_...")
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", index=True, max_length=36)
    event_type: str = Field(max_length=40)
    # Whom the message concerns, so an erasure finds its deliveries by equality, never in the payload.
    household_id: str | None = Field(default=None, index=True, max_length=80)
    order_id: str | None = Field(default=None, index=True, max_length=36)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16, index=True, description="pending, delivered or failed")
    attempts: int = 0
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), index=True)
    )
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class DeviceCommand(SQLModel, table=True):
    """A command for a fridge, kept until the broker has taken it (QoS 1)."""

    __tablename__ = "device_commands"
    # AUTOINCREMENT: an erasure deletes a fridge's pending commands and queues its wipe; with a reused
    # id, a dispatcher that read a deleted command marked the wipe sent without publishing it.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(foreign_key="devices.id", index=True, max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), index=True))


class EventCursor(SQLModel, table=True):
    """How far a consumer of stored events has read (the id of the last event it handled)."""

    __tablename__ = "event_cursors"

    name: str = Field(primary_key=True, max_length=40)
    position: int = 0


class Consent(SQLModel, table=True):
    """A household's consent to one recipient for one purpose, as PSD2 consents and GDPR Art. 7 ask:
    what data, when granted and withdrawn, the text shown, the channel, an optional expiry."""

    __tablename__ = "consents"

    id: str = Field(primary_key=True, max_length=36)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    recipient: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    purpose: str = Field(max_length=16, description="ordering, offers or analytics")
    data_categories: str = Field(max_length=300, description="Comma-separated, e.g. orders,inventory.")
    text_version: str = Field(max_length=40, description="The version of the consent text shown.")
    channel: str = Field(max_length=16, description="api, web or fridge")
    granted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class Offer(SQLModel, table=True):
    """An offer made to a household: from which company, under which consent, why, and its answer."""

    __tablename__ = "offers"

    id: str = Field(primary_key=True, max_length=36)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    # The consent that allowed it, active when the offer was made.
    consent_id: str = Field(foreign_key="consents.id", max_length=36)
    gtin: str = Field(max_length=14)
    name: str = Field(max_length=200)
    category: str | None = Field(default=None, max_length=40)
    kind: str = Field(max_length=16, description="need, complement or campaign")
    reason: str = Field(max_length=500, description="Why, in words, naming the signal.")
    data_categories: str = Field(max_length=300, description="The household's data it used.")
    score: float
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(max_length=24, description="sent, accepted, dismissed, not_this_category or ordered")
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    planned_order_id: str | None = Field(default=None, foreign_key="planned_orders.id", max_length=36)
    campaign_id: str | None = Field(default=None, max_length=36, index=True)
    arm: str | None = Field(default=None, max_length=16)


class OfferSuppression(SQLModel, table=True):
    """A category the household asked not to be offered ("not this category")."""

    __tablename__ = "offer_suppressions"
    __table_args__ = (UniqueConstraint("household_id", "category"),)

    id: int | None = Field(default=None, primary_key=True)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    category: str = Field(max_length=40)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Campaign(SQLModel, table=True):
    """A retailer's offer of one product to the households that allow its offers, as an A/B test:
    up to four variants and a holdout that gets nothing, each household in one arm for good."""

    __tablename__ = "campaigns"

    id: str = Field(primary_key=True, max_length=36)
    retailer_id: str = Field(foreign_key="retailers.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    gtin: str = Field(max_length=14)
    budget: int = Field(description="Most offers the campaign makes.")
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ends_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    holdout_share: float
    min_sample: int = Field(description="Households per arm before a winner may be named.")
    variants: str = Field(
        sa_column=Column(Text, nullable=False), description="JSON: name, message, discount."
    )
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class CampaignAssignment(SQLModel, table=True):
    """The arm a household is in for a campaign, from the first time it was eligible."""

    __tablename__ = "campaign_assignments"
    __table_args__ = (UniqueConstraint("campaign_id", "household_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True, max_length=36)
    household_id: str = Field(foreign_key="households.id", index=True, max_length=80)
    arm: str = Field(max_length=16, description="A variant's name, or control.")
    assigned_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Erasure(SQLModel, table=True):
    """A household's erasure: kept to prove it happened, without naming the household."""

    __tablename__ = "erasures"

    id: str = Field(primary_key=True, max_length=36)
    # SHA-256 of the household id: the household can show it was erased; nothing else points back.
    household_hash: str = Field(max_length=64, index=True)
    requested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # JSON: {device id: wipe request id}; each device's credential is revoked once it confirms.
    wipes: str = Field(sa_column=Column(Text, nullable=False))
    confirmed: str = Field(default="[]", sa_column=Column(Text, nullable=False), description="JSON: devices.")
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


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
WEB_SESSIONS = _table(WebSession)
PLANNED_ORDER_LINES = _table(PlannedOrderLine)
DELIVERY_SLOTS = _table(DeliverySlot)
ORDERS = _table(Order)
ORDER_LINES = _table(OrderLineRow)
ORDER_HISTORY = _table(OrderHistory)
IDEMPOTENCY_KEYS = _table(IdempotencyKey)
WEBHOOK_ENDPOINTS = _table(WebhookEndpoint)
WEBHOOK_DELIVERIES = _table(WebhookDelivery)
DEVICE_COMMANDS = _table(DeviceCommand)
EVENT_CURSORS = _table(EventCursor)
CONSENTS = _table(Consent)
OFFERS = _table(Offer)
OFFER_SUPPRESSIONS = _table(OfferSuppression)
CAMPAIGNS = _table(Campaign)
CAMPAIGN_ASSIGNMENTS = _table(CampaignAssignment)
ERASURES = _table(Erasure)
