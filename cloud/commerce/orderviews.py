"""Orders as they are read: an order with its lines, delivery slot and history.

These are the domain's views of an order, built from its rows in one place (:func:`view`). The
retailer's webhooks carry an order as :data:`ORDER_JSON` dumps it; the API answers with its own
model of the same fields (``cloud/api/schemas/retail.py``), validated from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter
from sqlalchemy import Connection, select

from cloud.db.engine import as_utc
from cloud.db.tables import DELIVERY_SLOTS, ORDER_HISTORY, ORDER_LINES, ORDERS
from shared.messages import OrderLine as FridgeLine
from shared.vocabulary import OrderStatus, SubstitutionState

__all__ = [
    "ORDER_JSON",
    "Order",
    "OrderChange",
    "OrderLine",
    "Slot",
    "etag",
    "fridge_lines",
    "list_ids",
    "slot_of",
    "view",
]


@dataclass(frozen=True, slots=True)
class Slot:
    """A delivery slot and how many orders it holds."""

    id: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int


@dataclass(frozen=True, slots=True)
class OrderLine:
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


@dataclass(frozen=True, slots=True)
class OrderChange:
    """One change of an order's status."""

    at: datetime
    actor: str
    from_status: str | None
    to_status: str
    detail: str


@dataclass(frozen=True, slots=True)
class Order:
    """An order with a retailer; ``version`` is its ETag."""

    id: str
    household_id: str
    retailer_id: str
    planned_order_id: str | None
    status: OrderStatus
    version: int
    currency: str
    total: float
    slot: Slot | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[OrderLine, ...]
    history: tuple[OrderChange, ...]


# An order as a webhook's body carries it (JSON types: times in ISO 8601, UTC).
ORDER_JSON: TypeAdapter[Order] = TypeAdapter(Order)


def etag(version: int) -> str:
    """Return the ETag of an order's version."""
    return f'"{version}"'


def view(connection: Connection, order_id: str) -> Order | None:
    """Return the order with its lines, slot and history; None if there is no such order."""
    order = connection.execute(select(ORDERS).where(ORDERS.c.id == order_id)).first()
    if order is None:
        return None
    slot = None
    if order.slot_id is not None:
        found = connection.execute(select(DELIVERY_SLOTS).where(DELIVERY_SLOTS.c.id == order.slot_id)).first()
        if found is not None:
            slot = slot_of(found)
    lines = connection.execute(
        select(ORDER_LINES).where(ORDER_LINES.c.order_id == order_id).order_by(ORDER_LINES.c.id)
    ).all()
    history = connection.execute(
        select(ORDER_HISTORY).where(ORDER_HISTORY.c.order_id == order_id).order_by(ORDER_HISTORY.c.id)
    ).all()
    return Order(
        id=order.id,
        household_id=order.household_id,
        retailer_id=order.retailer_id,
        planned_order_id=order.planned_order_id,
        status=order.status,
        version=order.version,
        currency=order.currency,
        total=round(order.total, 2),
        slot=slot,
        created_at=as_utc(order.created_at),
        updated_at=as_utc(order.updated_at),
        lines=tuple(
            OrderLine(
                gtin=line.gtin,
                name=line.name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                substitute_gtin=line.substitute_gtin,
                substitute_name=line.substitute_name,
                substitute_quantity=line.substitute_quantity,
                substitution=line.substitution,
                delivered_quantity=line.delivered_quantity,
            )
            for line in lines
        ),
        history=tuple(
            OrderChange(
                at=as_utc(change.at),
                actor=change.actor,
                from_status=change.from_status,
                to_status=change.to_status,
                detail=change.detail,
            )
            for change in history
        ),
    )


def list_ids(
    connection: Connection,
    *,
    household_id: str | None = None,
    retailer_id: str | None = None,
    status: str | None = None,
    after: str = "",
    limit: int = 100,
) -> list[str]:
    """Return order ids of a household or a retailer, by creation, a page after ``after``."""
    query = select(ORDERS.c.id, ORDERS.c.created_at)
    if household_id is not None:
        query = query.where(ORDERS.c.household_id == household_id)
    if retailer_id is not None:
        query = query.where(ORDERS.c.retailer_id == retailer_id)
    if status is not None:
        query = query.where(ORDERS.c.status == status)
    if after:
        start = connection.execute(select(ORDERS.c.created_at).where(ORDERS.c.id == after)).scalar()
        if start is not None:
            query = query.where(
                (ORDERS.c.created_at > start) | ((ORDERS.c.created_at == start) & (ORDERS.c.id > after))
            )
    rows = connection.execute(query.order_by(ORDERS.c.created_at, ORDERS.c.id).limit(limit)).all()
    return [str(row.id) for row in rows]


def slot_of(row: Any) -> Slot:
    """Return a delivery slot's row as a :class:`Slot`."""
    return Slot(
        id=str(row.id),
        starts_at=as_utc(row.starts_at),
        ends_at=as_utc(row.ends_at),
        capacity=int(row.capacity),
        booked=int(row.booked),
    )


class _Line(Protocol):
    """What :func:`fridge_lines` reads of an order's line (an :class:`OrderLine` view or the API's)."""

    @property
    def gtin(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def substitute_gtin(self) -> str | None: ...
    @property
    def substitute_quantity(self) -> int | None: ...
    @property
    def substitution(self) -> str | None: ...
    @property
    def delivered_quantity(self) -> int | None: ...


class _WithLines(Protocol):
    @property
    def lines(self) -> Sequence[_Line]: ...


def fridge_lines(order: _WithLines) -> tuple[FridgeLine, ...]:
    """Return what the fridge should expect: what came, else what will come (substitutes included)."""
    expected: dict[str, int] = {}
    for line in order.lines:
        swapped = line.substitution == "approved" and line.substitute_gtin is not None
        if line.substitution == "rejected" and line.delivered_quantity is None:
            continue  # the retailer has none, and the household wants no substitute
        code = line.substitute_gtin if swapped and line.substitute_gtin else line.gtin
        quantity = (line.substitute_quantity or 0) if swapped else line.quantity
        if line.delivered_quantity is not None:
            quantity = line.delivered_quantity
        if quantity > 0:
            expected[code] = expected.get(code, 0) + quantity
    return tuple(FridgeLine(code=code, quantity=quantity) for code, quantity in sorted(expected.items()))
