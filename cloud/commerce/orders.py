"""Orders with retailers: the state machine, delivery slots, and what each change announces.

::

    created ─┬─> accepted ──> picking ─┬─> dispatched ──> delivered
             └─> rejected              ├─> substitution_proposed ──(approved | rejected)──> picking
                                       └─> cancelled (from created, accepted, picking or
                                                      substitution_proposed; by either side)

The retailer moves an order along (``POST /retailer/orders/{id}/events``); the household cancels it
before it is dispatched, and decides on proposed substitutions, unless its substitution policy
decides at once (``accept`` or ``refuse``). A move the state does not allow raises
:class:`~cloud.errors.OrderStateError` (409), naming the state. Every change raises the order's
version, its ETag: a request with ``If-Match`` naming another version gets
:class:`~cloud.errors.VersionMismatch` (412), so two writers never overwrite each other unseen.

Each change commits with what it announces: the household's fridges get the order's new state
and lines (``cloud/outbox/commands.py``), and the retailer gets a webhook (``cloud/outbox/deliveries.py``) for
what the household side did: ``order.created``, ``order.cancelled``, ``order.approved`` (proposed
substitutions approved) and ``order.substitutions_rejected``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, case, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloud.commerce import consents
from cloud.commerce.orderviews import ORDER_JSON, Order, etag, fridge_lines, view
from cloud.db.tables import (
    CATALOG_ITEMS,
    DELIVERY_SLOTS,
    HOUSEHOLDS,
    ORDER_HISTORY,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
)
from cloud.errors import OrderInputError, OrderStateError, VersionMismatch
from cloud.outbox import commands, deliveries
from shared.messages import OrderUpdated
from shared.vocabulary import RETAILER_MOVES, OrderStatus, RetailerMove

# Statuses the household may cancel from: anything before the van leaves.
CANCELLABLE: tuple[OrderStatus, ...] = ("created", "accepted", "picking", "substitution_proposed")
# Statuses that free the order's delivery slot.
ENDED: tuple[OrderStatus, ...] = ("rejected", "cancelled")


@dataclass(frozen=True, slots=True)
class Wanted:
    """A product a household wants and how many packs."""

    gtin: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Substitution:
    """A product the retailer proposes instead of an ordered one it cannot deliver."""

    gtin: str
    substitute_gtin: str
    substitute_name: str
    substitute_quantity: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """How many packs of one ordered product came."""

    gtin: str
    quantity: int


# -- placing ---------------------------------------------------------------------------------


def create_order(
    connection: Connection,
    household_id: str,
    wanted: Sequence[Wanted],
    now: datetime,
    *,
    slot_id: str | None = None,
    planned_order_id: str | None = None,
    actor: str = "household",
) -> str:
    """Place an order with the household's retailer; return its id.

    Each product must be in the retailer's catalog and available; the order books ``slot_id``, or
    the first slot with room (none if the retailer publishes none).
    """
    retailer = _ordering_retailer(connection, household_id, now)
    quantities: dict[str, int] = {}
    for item in wanted:
        quantities[item.gtin] = quantities.get(item.gtin, 0) + item.quantity
    catalog, currency = _priced(connection, retailer, quantities)
    slot = _book(connection, retailer, now, slot_id)
    order_id = str(uuid.uuid4())
    connection.execute(
        insert(ORDERS).values(
            id=order_id,
            household_id=household_id,
            retailer_id=retailer,
            planned_order_id=planned_order_id,
            slot_id=slot,
            status="created",
            version=1,
            currency=currency,
            total=sum(catalog[code].price * quantity for code, quantity in quantities.items()),
            created_at=now,
            updated_at=now,
        )
    )
    connection.execute(
        insert(ORDER_LINES),
        [
            {
                "order_id": order_id,
                "gtin": code,
                "name": catalog[code].name,
                "quantity": quantity,
                "unit_price": catalog[code].price,
            }
            for code, quantity in sorted(quantities.items())
        ],
    )
    detail = f"from the planner's basket {planned_order_id}" if planned_order_id else ""
    _record(connection, order_id, now, actor, None, "created", detail)
    _announce(connection, order_id, now, "order.created")
    return order_id


def _ordering_retailer(connection: Connection, household_id: str, now: datetime) -> str:
    """Return the household's retailer, if it has one and consents to ordering there; else raise."""
    retailer = connection.execute(
        select(HOUSEHOLDS.c.retailer_id).where(HOUSEHOLDS.c.id == household_id)
    ).scalar()
    if retailer is None:
        raise OrderInputError(
            f"household {household_id!r} has no retailer: "
            f"choose one with PUT /households/{household_id}/retailer"
        )
    if not consents.is_active(connection, household_id, retailer, "ordering", now):
        raise OrderInputError(
            f"household {household_id!r} has not consented to ordering from {retailer!r}: "
            f"PUT /households/{household_id}/retailer, or grant it in /households/{household_id}/consents"
        )
    return str(retailer)


def _priced(connection: Connection, retailer: str, quantities: dict[str, int]) -> tuple[dict[str, Any], str]:
    """Return the catalog rows of the products and their one currency; raise if the retailer does
    not offer one of them now, or prices them in several currencies."""
    items = CATALOG_ITEMS.c
    catalog = {
        row.gtin: row
        for row in connection.execute(
            select(CATALOG_ITEMS).where(items.retailer_id == retailer, items.gtin.in_(list(quantities)))
        ).all()
    }
    missing = sorted(code for code in quantities if code not in catalog or not catalog[code].available)
    if missing:
        raise OrderInputError(
            f"retailer {retailer!r} does not offer {', '.join(missing)} now: "
            "GET its catalog, or leave them out"
        )
    currencies = {catalog[code].currency for code in quantities}
    if len(currencies) > 1:
        raise OrderInputError(
            f"retailer {retailer!r} prices these products in {sorted(currencies)}: one order, one currency"
        )
    return catalog, str(currencies.pop())


def place_planned(
    connection: Connection, planned_order_id: str, now: datetime, actor: str = "household"
) -> str | None:
    """Place the order of an approved basket with the household's retailer, once.

    Return the order's id; None if the household has no retailer or the retailer offers none of the
    basket's products (the basket then stays a proposal the household can shop itself).
    """
    existing = connection.execute(
        select(ORDERS.c.id).where(ORDERS.c.planned_order_id == planned_order_id)
    ).scalar()
    if existing is not None:
        return str(existing)
    basket = connection.execute(select(PLANNED_ORDERS).where(PLANNED_ORDERS.c.id == planned_order_id)).first()
    if basket is None:
        return None
    retailer = connection.execute(
        select(HOUSEHOLDS.c.retailer_id).where(HOUSEHOLDS.c.id == basket.household_id)
    ).scalar()
    if retailer is None or not consents.is_active(connection, basket.household_id, retailer, "ordering", now):
        return None
    lines = connection.execute(
        select(PLANNED_ORDER_LINES.c.code, PLANNED_ORDER_LINES.c.packs).where(
            PLANNED_ORDER_LINES.c.order_id == planned_order_id
        )
    ).all()
    offered = set(
        connection.execute(
            select(CATALOG_ITEMS.c.gtin).where(
                CATALOG_ITEMS.c.retailer_id == retailer,
                CATALOG_ITEMS.c.available,
                CATALOG_ITEMS.c.gtin.in_([line.code for line in lines]),
            )
        ).scalars()
    )
    wanted = [Wanted(line.code, int(line.packs)) for line in lines if line.code in offered and line.packs > 0]
    if not wanted:
        return None
    try:
        with connection.begin_nested():
            return create_order(
                connection, basket.household_id, wanted, now, planned_order_id=planned_order_id, actor=actor
            )
    except IntegrityError:  # another request placed this basket's order first
        found = connection.execute(
            select(ORDERS.c.id).where(ORDERS.c.planned_order_id == planned_order_id)
        ).scalar()
        return str(found) if found is not None else None


def stop_ordering(connection: Connection, household_id: str, retailer_id: str, now: datetime) -> int:
    """Cancel the household's orders with the retailer that can still be cancelled, and stop
    ordering there (its consent to ordering was withdrawn); return how many were cancelled."""
    open_orders = (
        connection.execute(
            select(ORDERS.c.id).where(
                ORDERS.c.household_id == household_id,
                ORDERS.c.retailer_id == retailer_id,
                ORDERS.c.status.in_(CANCELLABLE),
            )
        )
        .scalars()
        .all()
    )
    for order_id in open_orders:
        cancel(
            connection,
            household_id,
            str(order_id),
            now,
            reason="the household withdrew its consent to ordering",
        )
    connection.execute(
        update(HOUSEHOLDS)
        .where(HOUSEHOLDS.c.id == household_id, HOUSEHOLDS.c.retailer_id == retailer_id)
        .values(retailer_id=None)
    )
    return len(open_orders)


def _book(connection: Connection, retailer: str, now: datetime, slot_id: str | None) -> str | None:
    """Book ``slot_id`` or the first slot with room; return the slot booked, None if none exist."""
    slots = DELIVERY_SLOTS.c
    if slot_id is not None:
        booked = connection.execute(
            update(DELIVERY_SLOTS)
            .where(
                slots.id == slot_id,
                slots.retailer_id == retailer,
                slots.starts_at > now,
                slots.booked < slots.capacity,
            )
            .values(booked=slots.booked + 1)
            .returning(slots.id)
        ).first()
        if booked is None:
            raise OrderInputError(
                f"slot {slot_id!r} is not a future slot of {retailer!r} with room: GET /households/.../slots"
            )
        return slot_id
    # Read to the end before writing: on SQLite a SELECT left open pins the connection's snapshot,
    # so the UPDATE fails at once ("database is locked") once another request has written, and
    # the snapshot outlives the commit, hiding newer rows from the pooled connection's next user.
    candidates = (
        connection.execute(
            select(slots.id)
            .where(slots.retailer_id == retailer, slots.starts_at > now, slots.booked < slots.capacity)
            .order_by(slots.starts_at)
            .limit(20)
        )
        .scalars()
        .all()
    )
    for candidate in candidates:
        # Booked only if it still has room: two orders never overfill a slot.
        took = connection.execute(
            update(DELIVERY_SLOTS)
            .where(slots.id == candidate, slots.booked < slots.capacity)
            .values(booked=slots.booked + 1)
            .returning(slots.id)
        ).first()
        if took is not None:
            return str(candidate)
    return None


# -- changing --------------------------------------------------------------------------------


def retailer_event(
    connection: Connection,
    retailer_id: str,
    order_id: str,
    to: RetailerMove,
    now: datetime,
    *,
    if_match: int | None = None,
    reason: str = "",
    substitutions: Sequence[Substitution] = (),
    delivered: Sequence[Delivered] | None = None,
) -> Order | None:
    """Apply a retailer's report to its order; None if the retailer has no such order."""
    order = _load(connection, order_id)
    if order is None or order.retailer_id != retailer_id:
        return None
    _check_version(order, if_match)
    if to not in RETAILER_MOVES.get(order.status, ()):
        allowed = ", ".join(RETAILER_MOVES.get(order.status, ())) or "nothing: it is final"
        raise OrderStateError(order_id, order.status, _verb(to), f" (from {order.status}: {allowed})")
    lines = ORDER_LINES.c
    if to == "substitution_proposed":
        if not substitutions:
            raise OrderInputError("substitution_proposed needs at least one substitution")
        _check_lines(connection, order_id, {proposal.gtin for proposal in substitutions})
        for proposal in substitutions:
            connection.execute(
                update(ORDER_LINES)
                .where(lines.order_id == order_id, lines.gtin == proposal.gtin)
                .values(
                    substitute_gtin=proposal.substitute_gtin,
                    substitute_name=proposal.substitute_name,
                    substitute_quantity=proposal.substitute_quantity,
                    substitution="proposed",
                )
            )
    if to == "delivered":
        if delivered is None:
            connection.execute(
                update(ORDER_LINES)
                .where(
                    lines.order_id == order_id,
                    lines.substitution.is_(None) | (lines.substitution == "approved"),
                )
                .values(delivered_quantity=_effective_quantity())
            )
            connection.execute(
                update(ORDER_LINES)
                .where(lines.order_id == order_id, lines.substitution == "rejected")
                .values(delivered_quantity=0)
            )
        else:
            _check_lines(connection, order_id, {d.gtin for d in delivered})
            for line in delivered:
                connection.execute(
                    update(ORDER_LINES)
                    .where(lines.order_id == order_id, lines.gtin == line.gtin)
                    .values(delivered_quantity=line.quantity)
                )
    _move(connection, order, to, now, "retailer", reason, if_match=if_match)
    if to == "substitution_proposed":
        policy = connection.execute(
            select(HOUSEHOLDS.c.substitution_policy).where(HOUSEHOLDS.c.id == order.household_id)
        ).scalar()
        if policy in ("accept", "refuse"):
            decide_substitutions(
                connection, order.household_id, order_id, policy == "accept", now, actor="policy"
            )
    return view(connection, order_id)


def cancel(
    connection: Connection,
    household_id: str,
    order_id: str,
    now: datetime,
    *,
    if_match: int | None = None,
    actor: str = "household",
    reason: str = "",
) -> Order | None:
    """Cancel the household's order before it is dispatched; None if it has no such order."""
    order = _owned(connection, household_id, order_id, if_match)
    if order is None:
        return None
    if order.status not in CANCELLABLE:
        raise OrderStateError(order_id, order.status, "cancelled", " (only before it is dispatched)")
    _move(
        connection,
        order,
        "cancelled",
        now,
        actor,
        reason or f"cancelled by the {actor}",
        webhook="order.cancelled",
        if_match=if_match,
    )
    return view(connection, order_id)


def decide_substitutions(
    connection: Connection,
    household_id: str,
    order_id: str,
    approve: bool,
    now: datetime,
    *,
    if_match: int | None = None,
    actor: str = "household",
) -> Order | None:
    """Approve or reject every proposed substitution; the order goes back to picking."""
    order = _owned(connection, household_id, order_id, if_match)
    if order is None:
        return None
    if order.status != "substitution_proposed":
        wanted = "approved" if approve else "rejected"
        raise OrderStateError(order_id, order.status, f"{wanted} (no substitution is proposed)")
    decision = "approved" if approve else "rejected"
    lines = ORDER_LINES.c
    connection.execute(
        update(ORDER_LINES)
        .where(lines.order_id == order_id, lines.substitution == "proposed")
        .values(substitution=decision)
    )
    who = "by the household's policy" if actor == "policy" else f"by the {actor}"
    webhook = "order.approved" if approve else "order.substitutions_rejected"
    _move(
        connection,
        order,
        "picking",
        now,
        actor,
        f"substitutions {decision} {who}",
        webhook=webhook,
        if_match=if_match,
    )
    return view(connection, order_id)


def _owned(
    connection: Connection, household_id: str, order_id: str, if_match: int | None
) -> Row[tuple[object, ...]] | None:
    """Return the household's order if it is at the version If-Match names; None if it has none."""
    order = _load(connection, order_id)
    if order is None or order.household_id != household_id:
        return None
    _check_version(order, if_match)
    return order


def _check_lines(connection: Connection, order_id: str, gtins: set[str]) -> None:
    """Refuse a report that names products the order does not have."""
    lines = ORDER_LINES.c
    ordered = set(connection.execute(select(lines.gtin).where(lines.order_id == order_id)).scalars())
    unknown = sorted(gtins - ordered)
    if unknown:
        raise OrderInputError(f"order {order_id} has no line for {', '.join(unknown)}")


def _load(connection: Connection, order_id: str) -> Row[tuple[object, ...]] | None:
    return connection.execute(select(ORDERS).where(ORDERS.c.id == order_id)).first()


def _check_version(order: Row[tuple[object, ...]], if_match: int | None) -> None:
    if if_match is not None and if_match != order.version:
        raise VersionMismatch(str(order.id), int(order.version), etag(if_match))


def _move(
    connection: Connection,
    order: Row[tuple[object, ...]],
    to: str,
    now: datetime,
    actor: str,
    detail: str,
    *,
    webhook: str | None = None,
    if_match: int | None = None,
) -> None:
    """Change the status if nobody changed the order since it was read; record and announce it.

    If another request changed it in between, a caller that named a version (If-Match) gets
    :class:`VersionMismatch`; one that did not gets :class:`OrderStateError` with the new state.
    """
    orders = ORDERS.c
    moved = connection.execute(
        update(ORDERS)
        .where(orders.id == order.id, orders.version == order.version)
        .values(status=to, version=orders.version + 1, updated_at=now)
        .returning(orders.id)
    ).first()
    if moved is None:
        current = _load(connection, str(order.id))
        if if_match is not None or current is None:
            raise VersionMismatch(
                str(order.id), int(current.version) if current else 0, etag(int(order.version))
            )
        raise OrderStateError(
            str(order.id),
            str(current.status),
            _verb(to),
            " (it changed a moment ago: GET it and decide again)",
        )
    if to in ENDED and order.slot_id is not None:
        slots = DELIVERY_SLOTS.c
        connection.execute(
            update(DELIVERY_SLOTS).where(slots.id == order.slot_id).values(booked=slots.booked - 1)
        )
    _record(connection, str(order.id), now, actor, str(order.status), to, detail)
    _announce(connection, str(order.id), now, webhook)


def _record(
    connection: Connection,
    order_id: str,
    now: datetime,
    actor: str,
    before: str | None,
    after: str,
    detail: str,
) -> None:
    connection.execute(
        insert(ORDER_HISTORY).values(
            order_id=order_id, at=now, actor=actor, from_status=before, to_status=after, detail=detail[:500]
        )
    )


def _announce(connection: Connection, order_id: str, now: datetime, webhook: str | None) -> None:
    """Queue the order's state for the household's fridges and, if asked, a webhook to the retailer."""
    order = view(connection, order_id)
    assert order is not None
    lines = fridge_lines(order)
    expected = order.slot.starts_at if order.slot is not None else None

    def message(device_id: str) -> OrderUpdated:
        return OrderUpdated(
            order_id=uuid.UUID(order.id),
            device_id=device_id,
            status=order.status,
            expected_delivery=expected,
            lines=lines,
        )

    commands.enqueue_for_household(connection, order.household_id, message, now)
    if webhook is not None:
        body = ORDER_JSON.dump_python(order, mode="json")
        deliveries.enqueue(
            connection,
            order.retailer_id,
            webhook,
            body,
            now,
            household_id=order.household_id,
            order_id=order.id,
        )


def _effective_quantity() -> ColumnElement[int]:
    """Return the SQL for what a line delivers by default: the substitute's count if approved."""
    lines = ORDER_LINES.c
    return case((lines.substitution == "approved", lines.substitute_quantity), else_=lines.quantity)


def _verb(status: str) -> str:
    return {"picking": "picked", "substitution_proposed": "given a substitution"}.get(status, status)
