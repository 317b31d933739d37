"""The planner's baskets: one per household and planning cycle, and the household's answers.

A planning run (:func:`plan_cycle`) asks ``cloud/planning/planner.py`` what each household needs and
writes it as a basket (a planned order) once per cycle: the basket's idempotency key is
``household:cycle``, so the same run twice, or two workers at once, make one basket. On PostgreSQL
several workers share the work: each claims a batch of households with ``FOR UPDATE SKIP LOCKED``
(a row lease that ends with its transaction), plans them and commits. SQLite runs one planner.

A household's ``planning_mode`` decides what its basket becomes: ``automatic`` (approved at once,
cancellable for 24 hours), ``approve`` (proposed, waiting for the household; the default) or
``suggest`` (a shopping list only). An approved basket becomes an order with the household's
retailer (:func:`cloud.commerce.orders.place_planned`), if it has chosen one; the fridges are told of
each proposed basket and its fate, so the household can approve, cancel or skip it there too.

Baskets live here, beside the orders they become, and not in ``cloud/planning``: planning only reads
and predicts, and commerce builds on it (the offers read its plans too).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.commerce import orders
from cloud.db.tables import HOUSEHOLDS, OFFERS, ORDERS, PLANNED_ORDER_LINES, PLANNED_ORDERS
from cloud.errors import OrderStateError
from cloud.outbox import commands
from cloud.planning.planner import HouseholdPlan, cycle_of, plan_households
from cloud.planning.replenishment import PolicyParams
from shared.clock import Clock
from shared.messages import OrderLine, OrderUpdated
from shared.vocabulary import OPEN_BASKET_STATUSES, FridgeBasketStatus

__all__ = [
    "PlanningRun",
    "approve_order",
    "cancel_order",
    "plan_cycle",
    "skip_order",
    "tell_fridges",
]

log = logging.getLogger(__name__)

# What a fridge is told of a basket in each status (a suggestion is only a shopping list).
FRIDGE_STATUSES: dict[str, FridgeBasketStatus] = {
    "proposed": "proposed",
    "approved": "approved",
    "skipped": "skipped",
    "cancelled": "cancelled",
}
# Households planned per transaction: the lease a worker holds, and the size of its arrays.
BATCH = 2000
# An automatic basket can be cancelled for this long after it was made.
CANCELLABLE = timedelta(hours=24)


@dataclass
class PlanningRun:
    """What a planning run did."""

    cycle: int
    households: int = 0
    orders: int = 0
    lines: int = 0
    seconds: float = 0.0
    household_ids: list[str] = field(default_factory=list)


def plan_cycle(
    engine: Engine,
    clock: Clock,
    interval_s: float,
    *,
    params: PolicyParams | None = None,
    batch: int = BATCH,
) -> PlanningRun:
    """Plan every household not yet planned in this cycle; return what was done."""
    now = clock.now()
    run = PlanningRun(cycle_of(now, interval_s))
    started = datetime.now(UTC)
    while True:
        with engine.begin() as connection:
            claim = (
                select(HOUSEHOLDS.c.id, HOUSEHOLDS.c.planning_mode)
                .where(HOUSEHOLDS.c.planned_cycle < run.cycle)
                .order_by(HOUSEHOLDS.c.id)
                .limit(batch)
            )
            if connection.dialect.name == "postgresql":
                claim = claim.with_for_update(skip_locked=True)
            claimed = connection.execute(claim).all()
            if not claimed:
                break
            modes = {str(h): str(m) for h, m in claimed}
            plans = plan_households(connection, list(modes), now, params)
            for household in plans:
                accepted = _accepted_offers(connection, household.household_id)
                if not household.basket and not accepted:
                    continue
                mode = modes[household.household_id]
                basket = _write_order(connection, household, mode, run.cycle, now, accepted)
                if basket is None:
                    continue
                run.orders += 1
                run.lines += len(household.basket) + len(accepted)
                if mode == "automatic":
                    orders.place_planned(connection, basket, now, actor="planner")
                else:
                    tell_fridges(connection, basket, now)
            connection.execute(
                update(HOUSEHOLDS).where(HOUSEHOLDS.c.id.in_(list(modes))).values(planned_cycle=run.cycle)
            )
        run.households += len(claimed)
        run.household_ids += list(modes)
    run.seconds = (datetime.now(UTC) - started).total_seconds()
    if run.households:
        log.info(
            "planning cycle %d: %d households, %d orders, %d lines in %.1f s",
            run.cycle,
            run.households,
            run.orders,
            run.lines,
            run.seconds,
        )
    return run


def _write_order(
    connection: Connection,
    household: HouseholdPlan,
    mode: str,
    cycle: int,
    now: datetime,
    accepted: Sequence[tuple[str, str, str]] = (),
) -> str | None:
    """Insert the household's basket for the cycle once, with the offers it accepted (one pack
    each); return its id if this call inserted it."""
    order_id = str(uuid.uuid4())
    status = {"automatic": "approved", "suggest": "suggested"}.get(mode, "proposed")
    values = {
        "id": order_id,
        "household_id": household.household_id,
        "cycle": cycle,
        "idempotency_key": f"{household.household_id}:{cycle}",
        "status": status,
        "created_at": now,
        "cancellable_until": now + CANCELLABLE if mode == "automatic" else None,
    }
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(PLANNED_ORDERS)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    # RETURNING, not rowcount: psycopg reports -1 rows for an INSERT ... ON CONFLICT here.
    if connection.execute(statement.returning(PLANNED_ORDERS.c.id)).first() is None:
        return None  # another run of this cycle made it first
    lines = {
        item.code: {
            "order_id": order_id,
            "code": item.code,
            "packs": item.packs,
            "quantity": item.quantity,
            "unit": item.unit,
            "reason": item.reason[:300],
        }
        for item in household.basket
    }
    for _offer, code, reason in accepted:
        line = lines.setdefault(
            code,
            {"order_id": order_id, "code": code, "packs": 0, "quantity": 0.0, "unit": "unit", "reason": ""},
        )
        line["packs"] = int(line["packs"]) + 1  # type: ignore[call-overload]
        line["quantity"] = float(line["quantity"]) + 1.0  # type: ignore[arg-type]
        line["reason"] = f"{line['reason']}; you accepted the offer: {reason}".lstrip("; ")[:300]
    connection.execute(insert(PLANNED_ORDER_LINES), list(lines.values()))
    if accepted:
        connection.execute(
            update(OFFERS)
            .where(OFFERS.c.id.in_([offer for offer, _code, _reason in accepted]))
            .values(status="ordered", planned_order_id=order_id)
        )
    return order_id


def _accepted_offers(connection: Connection, household_id: str) -> list[tuple[str, str, str]]:
    """Return (offer id, GTIN, reason) of the offers the household accepted that no basket holds yet."""
    rows = connection.execute(
        select(OFFERS.c.id, OFFERS.c.gtin, OFFERS.c.reason)
        .where(
            OFFERS.c.household_id == household_id,
            OFFERS.c.status == "accepted",
            OFFERS.c.planned_order_id.is_(None),
        )
        .order_by(OFFERS.c.answered_at, OFFERS.c.id)
    ).all()
    return [(str(i), str(g), str(r)) for i, g, r in rows]


def approve_order(connection: Connection, household_id: str, order_id: str, now: datetime) -> str | None:
    """Approve a proposed basket and place its order with the household's retailer, if it has one;
    return the new status, None if the household has no such basket."""
    status = _status(connection, household_id, order_id)
    if status is None:
        return None
    if status != "proposed" or not _move(connection, order_id, "proposed", "approved"):
        raise OrderStateError(order_id, _status(connection, household_id, order_id) or status, "approved")
    tell_fridges(connection, order_id, now)
    orders.place_planned(connection, order_id, now)
    return "approved"


def cancel_order(connection: Connection, household_id: str, order_id: str, now: datetime) -> str | None:
    """Cancel a suggested or proposed basket, or an approved one while it is cancellable (with the
    order placed for it); return the new status, None if the household has no such basket."""
    row = connection.execute(
        select(PLANNED_ORDERS.c.status, PLANNED_ORDERS.c.cancellable_until).where(
            PLANNED_ORDERS.c.id == order_id, PLANNED_ORDERS.c.household_id == household_id
        )
    ).first()
    if row is None:
        return None
    status, until = str(row[0]), row[1]
    if status == "approved":
        until = None if until is None else (until if until.tzinfo else until.replace(tzinfo=UTC))
        if until is None or now > until:
            when = f" after {until.isoformat()}" if until is not None else " by the household"
            raise OrderStateError(order_id, status, "cancelled", when)
    elif status not in OPEN_BASKET_STATUSES:
        raise OrderStateError(order_id, status, "cancelled")
    if not _move(connection, order_id, status, "cancelled"):
        raise OrderStateError(order_id, _status(connection, household_id, order_id) or status, "cancelled")
    placed = connection.execute(select(ORDERS.c.id).where(ORDERS.c.planned_order_id == order_id)).scalar()
    if placed is not None:
        orders.cancel(connection, household_id, str(placed), now, reason="the household cancelled the basket")
    tell_fridges(connection, order_id, now)
    return "cancelled"


def skip_order(connection: Connection, household_id: str, order_id: str, now: datetime) -> str | None:
    """Skip a suggested or proposed basket: nothing is ordered this cycle; return the new status,
    None if the household has no such basket."""
    status = _status(connection, household_id, order_id)
    if status is None:
        return None
    if status not in OPEN_BASKET_STATUSES or not _move(connection, order_id, status, "skipped"):
        raise OrderStateError(order_id, _status(connection, household_id, order_id) or status, "skipped")
    tell_fridges(connection, order_id, now)
    return "skipped"


def tell_fridges(connection: Connection, basket_id: str, now: datetime) -> None:
    """Queue a basket's status and lines for the household's fridges, to show and answer there."""
    basket = connection.execute(select(PLANNED_ORDERS).where(PLANNED_ORDERS.c.id == basket_id)).first()
    if basket is None or basket.status not in FRIDGE_STATUSES:
        return
    lines = connection.execute(
        select(PLANNED_ORDER_LINES.c.code, PLANNED_ORDER_LINES.c.packs).where(
            PLANNED_ORDER_LINES.c.order_id == basket_id, PLANNED_ORDER_LINES.c.packs > 0
        )
    ).all()
    status = FRIDGE_STATUSES[basket.status]

    def message(device_id: str) -> OrderUpdated:
        return OrderUpdated(
            order_id=uuid.UUID(basket_id),
            device_id=device_id,
            status=status,
            lines=tuple(OrderLine(code=line.code, quantity=int(line.packs)) for line in lines),
        )

    commands.enqueue_for_household(connection, str(basket.household_id), message, now)


def _status(connection: Connection, household_id: str, order_id: str) -> str | None:
    orders = PLANNED_ORDERS.c
    found = connection.execute(
        select(orders.status).where(orders.id == order_id, orders.household_id == household_id)
    ).scalar_one_or_none()
    return None if found is None else str(found)


def _move(connection: Connection, order_id: str, before: str, after: str) -> bool:
    """Change the order's status if it is still ``before`` (another request may have changed it)."""
    orders = PLANNED_ORDERS.c
    moved = connection.execute(
        update(PLANNED_ORDERS)
        .where(orders.id == order_id, orders.status == before)
        .values(status=after)
        .returning(orders.id)
    ).first()
    return moved is not None
