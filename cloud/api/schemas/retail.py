"""The API's models of what households and retailers trade: catalogs, slots, orders, webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloud.api.schemas.common import GTIN_SCHEMA, Gtin, StoredTime, utc_time
from cloud.outbox.deliveries import DeliveryStatus
from shared import gtin
from shared.messages import Unit
from shared.vocabulary import OrderStatus, RetailerMove, SubstitutionPolicy, SubstitutionState

MAX_CATALOG_ITEMS = 10_000


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
    unit: Unit = "unit"
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

    updated_at: StoredTime


class HouseholdRetailerUpdate(BaseModel):
    """Which retailer a household's orders go to, and what a proposed substitution becomes."""

    model_config = ConfigDict(extra="forbid")

    retailer_id: str | None = Field(max_length=64, description="None: orders stay proposals.")
    substitution_policy: SubstitutionPolicy = Field(
        default="ask", description="ask: the household decides; accept or refuse: decided at once."
    )


class HouseholdRetailerPublic(HouseholdRetailerUpdate):
    """A household's retailer and substitution policy."""

    household_id: str


class SlotIn(BaseModel):
    """A delivery window a retailer publishes, with room for ``capacity`` orders."""

    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(ge=0, le=100_000)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return utc_time(value)


class SlotsUpload(BaseModel):
    """A bulk upsert of delivery slots, keyed by their start."""

    model_config = ConfigDict(extra="forbid")

    slots: list[SlotIn] = Field(min_length=1, max_length=1000)


class SlotPublic(BaseModel):
    """A delivery slot and how many orders it holds."""

    id: str
    starts_at: StoredTime
    ends_at: StoredTime
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
    substitution: SubstitutionState | None
    delivered_quantity: int | None


class OrderChangePublic(BaseModel):
    """One change of an order's status."""

    at: StoredTime
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
    created_at: StoredTime
    updated_at: StoredTime
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

    type: RetailerMove
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

    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://",
        description="https:// on port 443 (http:// only to loopback, where private webhooks are allowed)",
    )


class WebhookEndpointPublic(BaseModel):
    """A webhook endpoint; its secret is shown only when it is made or rotated."""

    id: str
    url: str
    created_at: StoredTime
    disabled_at: StoredTime | None
    disabled_reason: str | None
    previous_secret_valid_until: StoredTime | None


class WebhookSecretPublic(WebhookEndpointPublic):
    """An endpoint with its new signing secret: store it, it is not shown again."""

    secret: str


class WebhookDeliveryPublic(BaseModel):
    """One message to an endpoint and how its delivery went."""

    id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: StoredTime | None
    last_status_code: int | None
    last_error: str | None
    created_at: StoredTime
    delivered_at: StoredTime | None
    payload: str
