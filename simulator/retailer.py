"""A simulated grocery retailer: takes orders, and delivers them after a lead time, not always whole.

Households that shop online, and in closed-loop evaluation the planner, hand their orders to a
:class:`Retailer`. :class:`SimulatedRetailer` decides each order's fate when it is placed, from a
generator of its own: it fails as a whole (the van never comes), or it arrives after the lead time
with some lines out of stock and some replaced by another product of the same category. The same
seed and the same orders give the same deliveries.

:class:`simulator.apiretailer.ApiRetailer` implements the same interface through the cloud's order API.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from simulator.catalog import CATALOG, Product

# Vans deliver in the evening, when people are home.
DELIVERY_HOURS = (17.0, 20.0)


class RetailerSettings(BaseModel):
    """How the simulated retailer behaves; a scenario's ``[retailer]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    online_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of households that order online instead of shopping."
    )
    lead_time_days: int = Field(default=1, ge=0, le=14, description="Days from an order to its delivery.")
    late_rate: float = Field(default=0.05, ge=0, le=1, description="Chance an order comes a day late.")
    failure_rate: float = Field(default=0.02, ge=0, le=1, description="Chance an order never arrives.")
    out_of_stock_rate: float = Field(
        default=0.03, ge=0, le=1, description="Chance a line is missing from the delivery."
    )
    substitution_rate: float = Field(
        default=0.05, ge=0, le=1, description="Chance a line comes as another product of its category."
    )
    through_api: bool = Field(
        default=False,
        description="Order through the cloud's order API over HTTP (households' tokens, signed "
        "webhooks, the retailer's key) instead of in memory.",
    )


class OrderStatus(StrEnum):
    """Where an order stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OrderLine:
    """So many packs of one product."""

    code: str
    quantity: int


@dataclass(frozen=True, slots=True)
class DeliveredLine:
    """What came for one ordered line: ``code`` is what is in the bag, ``ordered`` what was asked for."""

    ordered: str
    code: str
    quantity: int

    @property
    def substituted(self) -> bool:
        """Return whether another product came instead of the ordered one."""
        return self.code != self.ordered


@dataclass
class Order:
    """One order and what became of it."""

    order_id: str
    household: str
    placed: datetime
    lines: tuple[OrderLine, ...]
    due: datetime
    status: OrderStatus = OrderStatus.PENDING
    delivered: tuple[DeliveredLine, ...] = ()
    _fate: tuple[DeliveredLine, ...] | None = field(default=None, repr=False)


class Retailer(Protocol):
    """Where orders go: the simulated retailer, or one behind the order API."""

    @property
    def orders(self) -> list[Order]:
        """Return every order placed so far, with what became of it."""
        ...

    @property
    def lead_time_days(self) -> int:
        """Return the days from an order to its delivery, as promised."""
        ...

    def place(self, household: str, lines: Sequence[OrderLine], at: datetime) -> Order:
        """Order ``lines`` for ``household`` at ``at``; return the order."""
        ...

    def deliveries(self, household: str, day: date) -> list[Order]:
        """Return the household's orders that arrive or fail on ``day``, settling them."""
        ...


@runtime_checkable
class TellsFridges(Protocol):
    """A retailer whose deliveries the fridges hear of (through the cloud) before they are unpacked."""

    def take_delivered(self) -> list[tuple[str, str]]:
        """Return (household, order id on the fridge) of the deliveries since the last call."""
        ...


class SimulatedRetailer:
    """A retailer in memory, seeded; see the module docstring."""

    def __init__(
        self, settings: RetailerSettings | None = None, *, seed: int = 1, catalog: Sequence[Product] = CATALOG
    ) -> None:
        self.settings = settings or RetailerSettings()
        self._rng = random.Random(seed * 104_729)
        self._by_code = {p.code: p for p in catalog}
        self._by_category: dict[str, list[Product]] = {}
        for product in catalog:
            self._by_category.setdefault(product.category, []).append(product)
        self.orders: list[Order] = []
        self._pending: dict[str, list[Order]] = {}

    @property
    def lead_time_days(self) -> int:
        """Return the promised days from an order to its delivery."""
        return self.settings.lead_time_days

    def place(self, household: str, lines: Sequence[OrderLine], at: datetime) -> Order:
        """Take an order; its fate (late, failed, short, substituted) is drawn now."""
        if not lines:
            raise ValueError("an order needs at least one line")
        settings, rng = self.settings, self._rng
        days = settings.lead_time_days + (1 if rng.random() < settings.late_rate else 0)
        hour = rng.uniform(*DELIVERY_HOURS)
        due = datetime.combine(at.date() + timedelta(days=days), time(), at.tzinfo) + timedelta(hours=hour)
        if due <= at:
            due = at + timedelta(hours=2)  # a same-day order still takes the van's trip
        order = Order(f"sim-{len(self.orders) + 1:07d}", household, at, tuple(lines), due)
        if rng.random() >= settings.failure_rate:
            kept = [line for line in lines if rng.random() >= settings.out_of_stock_rate]
            order._fate = tuple(self._fill(line) for line in kept)
        self.orders.append(order)
        self._pending.setdefault(household, []).append(order)
        return order

    def deliveries(self, household: str, day: date) -> list[Order]:
        """Settle and return the household's orders due on ``day`` (or before), in due order."""
        pending = self._pending.get(household, [])
        due = [o for o in pending if o.due.date() <= day]
        self._pending[household] = [o for o in pending if o.due.date() > day]
        for order in due:
            if order._fate is None:
                order.status = OrderStatus.FAILED
            else:
                order.status = OrderStatus.DELIVERED
                order.delivered = order._fate
        return sorted(due, key=lambda o: o.due)

    def _fill(self, line: OrderLine) -> DeliveredLine:
        product = self._by_code.get(line.code)
        if product is not None and self._rng.random() < self.settings.substitution_rate:
            others = [p for p in self._by_category[product.category] if p.code != line.code]
            if others:
                return DeliveredLine(line.code, self._rng.choice(others).code, line.quantity)
        return DeliveredLine(line.code, line.code, line.quantity)
