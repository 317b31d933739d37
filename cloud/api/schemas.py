"""Models of the HTTP API's responses, separate from tables and wire messages."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cloud.ingest.deadletters import MAX_DEAD_LETTER_BYTES
from shared import gtin


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


class DeadLetterPublic(BaseModel):
    """A message ingestion refused, as kept in the dead-letter table."""

    id: int
    received_at: datetime
    topic: str
    device_id: str | None = Field(description="The device the topic or event names; null if none could.")
    reason: str = Field(description="The rejection reason it was counted under in frigo_ingest_rejected.")
    detail: str
    payload: str = Field(
        description=f"The payload (its first {MAX_DEAD_LETTER_BYTES} bytes at most) as UTF-8 text; bytes "
        "that are not UTF-8 appear as \\xNN escapes."
    )
    payload_size: int = Field(description="Size of the payload as received, in bytes.")
    payload_truncated: bool = Field(description="Whether `payload` is only the start of it.")


class CheckPublic(BaseModel):
    """One dependency's readiness."""

    ready: bool
    detail: str


class ReadinessPublic(BaseModel):
    """Whether the worker can do its job, and if not, which dependency is missing."""

    ready: bool
    database: CheckPublic
    broker: CheckPublic


class DaysLeftPublic(BaseModel):
    """Days until an item is gone: early (heavy use), likely, late; null if it is not being used."""

    p10: float | None
    p50: float | None
    p90: float | None


class ForecastItemPublic(BaseModel):
    """One product's forecast and the planner's decision, with the reason in words."""

    code: str
    unit: str = Field(description="unit, g or ml: the unit of stock, rate and pack")
    stock: float
    pack: float = Field(description="The household's usual pack, from what its fridge scanned in.")
    rate_per_day: float
    days_until_empty: DaysLeftPublic
    reorder_date: date | None = Field(description="When the item will be due; null if it never runs out.")
    order_packs: int = Field(description="Packs the planner would order now.")
    reason: str


class ForecastPublic(BaseModel):
    """A household's forecast, item by item."""

    household_id: str
    generated_at: datetime
    items: list[ForecastItemPublic]


class ShoppingLinePublic(BaseModel):
    """One line of a shopping list."""

    code: str
    packs: int
    quantity: float
    unit: str
    reason: str


class ShoppingListPublic(BaseModel):
    """The basket the planner made for the household (or would make now, if it made none yet)."""

    household_id: str
    order_id: str | None = Field(description="The planned order, or null for a list computed now.")
    status: str | None = Field(description="suggested, proposed or approved; null if computed now.")
    cycle: int | None
    created_at: datetime | None
    cancellable_until: datetime | None
    lines: list[ShoppingLinePublic]


class PlannedOrderPublic(BaseModel):
    """A basket the planner made, as the household sees it."""

    id: str
    household_id: str
    cycle: int
    status: str = Field(description="suggested, proposed, approved, skipped or cancelled")
    created_at: datetime
    cancellable_until: datetime | None
    order_id: str | None = Field(description="The order placed with the retailer for it, if any.")
    lines: list[ShoppingLinePublic]


class PlanningModeUpdate(BaseModel):
    """How the household wants the planner's baskets."""

    mode: Literal["automatic", "approve", "suggest"] = Field(
        description="automatic: ordered at once, cancellable for 24 h; approve: each order waits for "
        "the household; suggest: a shopping list only"
    )


class PlanningModePublic(BaseModel):
    """The household's planning mode."""

    household_id: str
    mode: str


MAX_CATALOG_ITEMS = 10_000
# What the spec says of a GTIN: its digits, and the custom format "gtin" (the check digit).
GTIN_SCHEMA: dict[str, Any] = {"pattern": "^([0-9]{8}|[0-9]{12,14})$", "format": "gtin"}


class CatalogItemIn(BaseModel):
    """A product as a retailer uploads it."""

    model_config = ConfigDict(extra="forbid")

    gtin: str = Field(
        description="GTIN-8, -12, -13 or -14 with a valid check digit.", json_schema_extra=GTIN_SCHEMA
    )
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(ge=0, description="Price of one pack, in ``currency``.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")
    pack_size: float = Field(gt=0, description="What one pack holds, in ``unit``.")
    unit: Literal["unit", "g", "ml"] = "unit"
    available: bool = True
    category: str | None = Field(
        default=None,
        max_length=40,
        description="The aisle, e.g. dairy: what households can turn offers off by.",
    )

    @field_validator("gtin")
    @classmethod
    def _valid_gtin(cls, value: str) -> str:
        if not gtin.is_valid(value):
            raise ValueError("not a GTIN: 8, 12, 13 or 14 digits with a valid check digit")
        return value


class CatalogUpload(BaseModel):
    """A bulk upsert of a retailer's catalog."""

    model_config = ConfigDict(extra="forbid")

    items: list[CatalogItemIn] = Field(min_length=1, max_length=MAX_CATALOG_ITEMS)


class CatalogUploadPublic(BaseModel):
    """What a catalog upload did."""

    retailer_id: str
    upserted: int
    products: int = Field(description="Products in the retailer's catalog after the upload.")


class CatalogItemPublic(CatalogItemIn):
    """A product of the retailer's catalog, as stored."""

    updated_at: datetime


def _gtin(value: str) -> str:
    if not gtin.is_valid(value):
        raise ValueError("not a GTIN: 8, 12, 13 or 14 digits with a valid check digit")
    return value


Gtin = Annotated[str, AfterValidator(_gtin), Field(json_schema_extra=GTIN_SCHEMA)]


OrderStatus = Literal[
    "created",
    "accepted",
    "rejected",
    "picking",
    "substitution_proposed",
    "dispatched",
    "delivered",
    "cancelled",
]


class HouseholdRetailerUpdate(BaseModel):
    """Which retailer a household's orders go to, and what a proposed substitution becomes."""

    model_config = ConfigDict(extra="forbid")

    retailer_id: str | None = Field(max_length=64, description="None: orders stay proposals.")
    substitution_policy: Literal["ask", "accept", "refuse"] = Field(
        default="ask", description="ask: the household decides; accept or refuse: decided at once."
    )


class HouseholdRetailerPublic(HouseholdRetailerUpdate):
    """A household's retailer and substitution policy."""

    household_id: str


def _utc(value: datetime) -> datetime:
    """Return the time in UTC; refuse one without a time zone. (SQLite keeps a time without its
    offset: 18:00+01:00 would come back as 18:00Z.)"""
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-12-01T18:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, say
        raise ValueError("out of range once in UTC") from None


UtcTime = Annotated[datetime, AfterValidator(_utc)]


class SlotIn(BaseModel):
    """A delivery window a retailer publishes, with room for ``capacity`` orders."""

    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(ge=0, le=100_000)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)


class SlotsUpload(BaseModel):
    """A bulk upsert of delivery slots, keyed by their start."""

    model_config = ConfigDict(extra="forbid")

    slots: list[SlotIn] = Field(min_length=1, max_length=1000)


class SlotPublic(BaseModel):
    """A delivery slot and how many orders it holds."""

    id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int


class OrderLineIn(BaseModel):
    """A product to order and how many packs."""

    model_config = ConfigDict(extra="forbid")

    gtin: Gtin = Field(description="GTIN of a product in the household's retailer's catalog.")
    quantity: int = Field(ge=1, le=99)


class OrderCreate(BaseModel):
    """An order a household places with its retailer."""

    model_config = ConfigDict(extra="forbid")

    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    slot_id: str | None = Field(
        default=None, max_length=36, description="A slot of the retailer; None: the first free."
    )


class OrderLinePublic(BaseModel):
    """One product of an order: what was ordered, what was proposed instead, what came."""

    gtin: str
    name: str
    quantity: int
    unit_price: float
    substitute_gtin: str | None
    substitute_name: str | None
    substitute_quantity: int | None
    substitution: Literal["proposed", "approved", "rejected"] | None
    delivered_quantity: int | None


class OrderChangePublic(BaseModel):
    """One change of an order's status."""

    at: datetime
    actor: str
    from_status: str | None
    to_status: str
    detail: str


class OrderPublic(BaseModel):
    """An order with a retailer; ``version`` is its ETag, to send back as If-Match."""

    id: str
    household_id: str
    retailer_id: str
    planned_order_id: str | None
    status: OrderStatus
    version: int
    currency: str
    total: float
    slot: SlotPublic | None
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLinePublic]
    history: list[OrderChangePublic]


class SubstitutionIn(BaseModel):
    """A product the retailer proposes instead of one it cannot deliver."""

    model_config = ConfigDict(extra="forbid")

    gtin: Gtin = Field(description="The ordered product.")
    substitute_gtin: Gtin
    substitute_name: str = Field(min_length=1, max_length=200)
    substitute_quantity: int = Field(ge=1, le=99)


class DeliveredIn(BaseModel):
    """How many packs of one ordered product came."""

    model_config = ConfigDict(extra="forbid")

    gtin: Gtin
    quantity: int = Field(ge=0, le=99)


class RetailerOrderEvent(BaseModel):
    """A retailer's report on an order: the status it moves to, and its details."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "accepted", "rejected", "picking", "substitution_proposed", "dispatched", "delivered", "cancelled"
    ]
    reason: str = Field(default="", max_length=500)
    substitutions: list[SubstitutionIn] = Field(
        default_factory=list, max_length=200, description="With substitution_proposed: at least one."
    )
    delivered: list[DeliveredIn] | None = Field(
        default=None, max_length=200, description="With delivered: what came; None: everything as ordered."
    )


class SubstitutionDecision(BaseModel):
    """The household's answer to the substitutions its retailer proposed."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]


class WebhookEndpointCreate(BaseModel):
    """A URL that receives the retailer's webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://", description="http:// or https://")


class WebhookEndpointPublic(BaseModel):
    """A webhook endpoint; its secret is shown only when it is made or rotated."""

    id: str
    url: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_valid_until: datetime | None


class WebhookSecretPublic(WebhookEndpointPublic):
    """An endpoint with its new signing secret: store it, it is not shown again."""

    secret: str


class WebhookDeliveryPublic(BaseModel):
    """One message to an endpoint and how its delivery went."""

    id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str


class ErrorPublic(BaseModel):
    """An error: what went wrong and what to do, in words."""

    detail: str


class FieldErrorPublic(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field.")
    msg: str
    type: str


class InvalidRequestPublic(BaseModel):
    """A request that cannot be done: its invalid fields, or the reason in words."""

    detail: str | list[FieldErrorPublic]


class ConsentGrant(BaseModel):
    """A household's consent to a recipient for a purpose."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=1, max_length=64, description="A retailer's id.")
    purpose: Literal["ordering", "offers", "analytics"]
    data_categories: list[Literal["orders", "inventory", "consumption", "purchases"]] | None = Field(
        default=None, max_length=4, description="None: the purpose's usual data (cloud/commerce/consents.py)."
    )
    text_version: str | None = Field(default=None, max_length=40, description="None: the current text.")
    channel: Literal["api", "web"] = "api"
    expires_at: UtcTime | None = None


class ConsentWithdrawal(BaseModel):
    """Which consent to withdraw: the recipient and purpose."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=1, max_length=64)
    purpose: Literal["ordering", "offers", "analytics"]


class ConsentPublic(BaseModel):
    """One grant in the household's consent ledger."""

    id: str
    recipient: str
    purpose: str
    data_categories: list[str]
    text_version: str
    channel: str
    granted_at: datetime
    withdrawn_at: datetime | None
    expires_at: datetime | None
    active: bool


class OfferPublic(BaseModel):
    """An offer made to the household: from whom, why, with which data, under which consent."""

    id: str
    retailer_id: str
    consent_id: str
    gtin: str
    name: str
    category: str | None
    kind: Literal["need", "complement", "campaign"]
    reason: str
    data_categories: list[str]
    created_at: datetime
    expires_at: datetime
    status: Literal["sent", "accepted", "dismissed", "not_this_category", "ordered"]
    answered_at: datetime | None
    planned_order_id: str | None


class OfferAnswerIn(BaseModel):
    """The household's answer to an offer."""

    model_config = ConfigDict(extra="forbid")

    answer: Literal["accepted", "dismissed", "not_this_category"] = Field(
        description="accepted: into the next order; not_this_category: no more offers of its category."
    )


class VariantIn(BaseModel):
    """One version of a campaign's offer."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    message: str = Field(min_length=1, max_length=200)
    discount_percent: float = Field(default=0, ge=0, le=90)


class CampaignIn(BaseModel):
    """A campaign: one product, up to four variants and a holdout that gets nothing."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    gtin: Gtin
    variants: list[VariantIn] = Field(min_length=1, max_length=4)
    starts_at: UtcTime
    ends_at: UtcTime
    budget: int = Field(ge=1, le=10_000_000, description="Most offers the campaign makes.")
    holdout_share: float = Field(default=0.1, ge=0.05, le=0.5)
    min_sample: int = Field(
        default=100, ge=20, le=1_000_000, description="Households per arm before a winner."
    )


class CampaignPublic(CampaignIn):
    """A campaign as stored."""

    id: str
    created_at: datetime
    stopped_at: datetime | None


class RatePublic(BaseModel):
    """A count, its rate and the rate's 95 % Wilson interval; null when withheld."""

    count: int | None
    rate: float | None
    low: float | None
    high: float | None


class ArmPublic(BaseModel):
    """One arm's aggregates; withheld (all null) under 20 households."""

    arm: str
    households: int | None
    offers: int | None
    accepted: RatePublic
    converted: RatePublic
    p_value: float | None = Field(description="Conversion against the holdout, two-proportion z-test.")
    withheld: bool


class CampaignResultsPublic(BaseModel):
    """A campaign's results: aggregates per arm, and a winner only when the evidence allows."""

    campaign_id: str
    arms: list[ArmPublic]
    winner: str | None
    verdict: str


class ErasurePublic(BaseModel):
    """An erasure begun: its record, and what is kept and why."""

    erasure_id: str
    household_hash: str = Field(description="SHA-256 of the household id: how the record names it.")
    kept: dict[str, str]
