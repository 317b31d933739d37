"""The API's models of households: their fridges, inventory, events, forecast and baskets."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, Field

from cloud.api.schemas.common import StoredTime
from shared.vocabulary import BasketStatus, PlanningMode


class DevicePublic(BaseModel):
    """A fridge as the API shows it."""

    id: str
    online: bool
    last_seen_at: StoredTime | None
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
    occurred_at: StoredTime
    received_at: StoredTime


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
    generated_at: StoredTime
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
    status: BasketStatus | None = Field(description="suggested, proposed or approved; null if computed now.")
    cycle: int | None
    created_at: StoredTime | None
    cancellable_until: StoredTime | None
    lines: list[ShoppingLinePublic]


class PlannedOrderPublic(BaseModel):
    """A basket the planner made, as the household sees it."""

    id: str
    household_id: str
    cycle: int
    status: BasketStatus = Field(description="suggested, proposed, approved, skipped or cancelled")
    created_at: StoredTime
    cancellable_until: StoredTime | None
    order_id: str | None = Field(description="The order placed with the retailer for it, if any.")
    lines: list[ShoppingLinePublic]


class PlanningModeUpdate(BaseModel):
    """How the household wants the planner's baskets."""

    mode: PlanningMode = Field(
        description="automatic: ordered at once, cancellable for 24 h; approve: each order waits for "
        "the household; suggest: a shopping list only"
    )


class PlanningModePublic(BaseModel):
    """The household's planning mode."""

    household_id: str
    mode: PlanningMode
