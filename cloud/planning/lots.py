"""The household's lots, replayed from its stored lot events: where each is, how much is left of it,
and its best-before date (the latest an ``item_added`` or ``item_opened`` gave).

A lot is one ``item_added`` of one fridge (``device_id``, ``lot_id``); the events that follow it
(consumed, discarded, opened, moved) change it. An event for a lot the cloud never saw added (it
was added before the cloud kept events) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, func, select

from cloud.db.tables import CATALOG_ITEMS, EVENTS, HOUSEHOLDS
from shared.messages import (
    Event,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
    decode_event,
)

__all__ = ["LOT_EVENTS", "Inventory", "Lot", "inventory", "product_names", "replay"]

LOT_EVENTS = ("item_added", "item_consumed", "item_discarded", "item_opened", "item_moved")
# The order the inventory lists the places in: the fridge's shelves, its door, then the freezer.
LOCATIONS = ("fridge", "door", "freezer")
# Less than this is what float subtraction leaves of a lot used up, not food.
EMPTY = 1e-9


@dataclass
class Lot:
    """A lot in the fridge as the household's events leave it."""

    code: str
    name: str
    quantity: float
    unit: str
    location: str
    best_before: date | None
    opened: bool = False


@dataclass
class Inventory:
    """The household's lots by location, and the id of the last event they include."""

    by_location: dict[str, list[Lot]] = field(default_factory=dict)
    last_event_id: int = 0

    @property
    def count(self) -> int:
        return sum(len(lots) for lots in self.by_location.values())


def replay(events: Iterable[Event]) -> list[Lot]:
    """Replay lot events, oldest first, into the lots with something left, named by their codes."""
    lots: dict[tuple[str, int], Lot] = {}
    for event in events:
        if isinstance(event, ItemAdded):
            lots[(event.device_id, event.lot_id)] = Lot(
                code=event.code,
                name=event.code,
                quantity=event.quantity,
                unit=event.unit,
                location=event.location,
                best_before=event.best_before,
            )
            continue
        if not isinstance(event, ItemConsumed | ItemDiscarded | ItemOpened | ItemMoved):
            continue
        lot = lots.get((event.device_id, event.lot_id))
        if lot is None:
            continue  # a lot added before the cloud kept events, or on another fridge's count
        if isinstance(event, ItemConsumed | ItemDiscarded):
            lot.quantity -= event.quantity
        elif isinstance(event, ItemOpened):
            lot.opened = True
            lot.best_before = event.best_before
        else:
            lot.location = event.to_location
    return [lot for lot in lots.values() if lot.quantity > EMPTY]


def product_names(connection: Connection, household_id: str, codes: set[str]) -> dict[str, str]:
    """Return products' names from the catalogs, the household's retailer's first."""
    if not codes:
        return {}
    retailer = connection.execute(
        select(HOUSEHOLDS.c.retailer_id).where(HOUSEHOLDS.c.id == household_id)
    ).scalar()
    rows = connection.execute(
        select(CATALOG_ITEMS.c.gtin, CATALOG_ITEMS.c.name, CATALOG_ITEMS.c.retailer_id).where(
            CATALOG_ITEMS.c.gtin.in_(sorted(codes))
        )
    ).all()
    names: dict[str, str] = {}
    # The household's retailer's rows come last, so its name wins.
    for gtin, name, _owner in sorted(rows, key=lambda r: r.retailer_id == retailer):
        names[str(gtin)] = str(name)
    return names


def inventory(connection: Connection, household_id: str) -> Inventory:
    """Return the household's lots by location, named from the catalogs, soonest due first."""
    payloads = (
        connection.execute(
            select(EVENTS.c.payload)
            .where(EVENTS.c.household_id == household_id, EVENTS.c.type.in_(LOT_EVENTS))
            .order_by(EVENTS.c.id)
        )
        .scalars()
        .all()
    )
    last = connection.execute(
        select(func.max(EVENTS.c.id)).where(EVENTS.c.household_id == household_id)
    ).scalar()
    left = replay(decode_event(payload) for payload in payloads)
    names = product_names(connection, household_id, {lot.code for lot in left})
    by_location: dict[str, list[Lot]] = {}
    for lot in left:
        lot.name = names.get(lot.code, lot.code)
        lot.quantity = round(lot.quantity, 3)
        by_location.setdefault(lot.location, []).append(lot)
    ordered = sorted(by_location, key=lambda loc: (*LOCATIONS, loc).index(loc))
    return Inventory(
        by_location={
            loc: sorted(by_location[loc], key=lambda lot: (lot.best_before or date.max, lot.name))
            for loc in ordered
        },
        last_event_id=int(last or 0),
    )
