"""The planner: from the fleet's stored events to each household's forecast and proposed basket.

A planning run reads, per household and product, what the fridges reported (``events``: stock as
the sum of the changes, use per day from ``item_consumed``, the household's usual pack from
``item_added``, the shelf life from its best-before date), turns it into arrays in packs, and runs
:func:`cloud.planning.forecast.forecast` and :func:`cloud.planning.replenishment.plan` on all of them at once.

Each run belongs to a **cycle** (the planning interval's number since the epoch). A household is
planned once per cycle: its ``planned_cycle`` says which it had last, and its basket's idempotency
key is ``household:cycle``, so the same run twice, or two workers at once, make one order. On
PostgreSQL several workers share the work: each claims a batch of households with ``FOR UPDATE
SKIP LOCKED`` (a row lease that ends with its transaction), plans them and commits. SQLite runs one
planner.

A household's ``planning_mode`` decides what its basket becomes: ``automatic`` (approved at once,
cancellable for 24 hours), ``approve`` (proposed, waiting for the household; the default) or
``suggest`` (a shopping list only). An approved basket becomes an order with the household's
retailer (:func:`cloud.commerce.orders.place_planned`), if it has chosen one; the fridges are told of each
proposed basket and its fate, so the household can approve, cancel or skip it there too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.commerce import orders
from cloud.db.tables import (
    CATALOG_ITEMS,
    EVENTS,
    HOUSEHOLDS,
    OFFERS,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
)
from cloud.errors import OrderStateError
from cloud.outbox import commands
from cloud.planning.forecast import Forecast, forecast
from cloud.planning.replenishment import Plan, PlanItems, PolicyParams, plan
from shared.clock import Clock
from shared.messages import FridgeOrderStatus, OrderLine, OrderUpdated

__all__ = [
    "HouseholdPlan",
    "ItemPlan",
    "PlanningRun",
    "approve_order",
    "cancel_order",
    "plan_cycle",
    "plan_households",
    "skip_order",
    "tell_fridges",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Days of use the model reads: TSB's memory is about three weeks, the weekday pattern needs six.
WINDOW_DAYS = 56
# What a fridge is told of a basket in each status (a suggestion is only a shopping list).
FRIDGE_STATUSES: dict[str, FridgeOrderStatus] = {
    "proposed": "proposed",
    "approved": "approved",
    "skipped": "skipped",
    "cancelled": "cancelled",
}
# Households planned per transaction: the lease a worker holds, and the size of its arrays.
BATCH = 2000
# A product whose best-before the fridge never saw keeps about a week.
DEFAULT_SHELF_LIFE_DAYS = 7.0
# Before the fleet has seen a product for four weeks, its prior is the fleet's average product.
PRIOR_MIN_DAYS = 28
FALLBACK_RATE = 0.1  # packs a day
CANCELLABLE = timedelta(hours=24)
# A basket proposed or approved, with no order placed for it, counts as on its way this long (the
# household may shop it itself): the next cycles do not order the same packs again.
ON_ORDER_FOR = timedelta(days=3)
# An order with the retailer is on its way until it is delivered (its packs are then scanned in).
OPEN_ORDER_STATUSES = ("created", "accepted", "picking", "substitution_proposed", "dispatched")
MODES = ("automatic", "approve", "suggest")


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """One product of a household: its forecast and the planner's decision."""

    code: str
    unit: str
    pack: float  # the household's usual pack, in ``unit``
    stock: float  # in ``unit``
    rate: float  # ``unit`` a day
    sd: float  # spread of a day's use, ``unit``
    days_left: tuple[float, float, float]  # p10, p50, p90
    reorder_on: date | None  # the day it will be due, None if it never runs out
    packs: int  # packs to order now: the retailer's, if the household has one
    reason: str
    retail_pack: float = 0.0  # what one of those packs holds, in ``unit`` (0: the household's pack)

    @property
    def quantity(self) -> float:
        """Return what the packs to order hold, in ``unit``."""
        return self.packs * (self.retail_pack or self.pack)


@dataclass(frozen=True, slots=True)
class HouseholdPlan:
    """A household's items, planned."""

    household_id: str
    items: list[ItemPlan]

    @property
    def basket(self) -> list[ItemPlan]:
        """Return the items to order now."""
        return [item for item in self.items if item.packs > 0]


@dataclass
class PlanningRun:
    """What a planning run did."""

    cycle: int
    households: int = 0
    orders: int = 0
    lines: int = 0
    seconds: float = 0.0
    household_ids: list[str] = field(default_factory=list)


@dataclass
class _Items:
    """The arrays of a batch of households, one row per (household, product) ever seen."""

    households: list[str]
    household: IntArray
    code: list[str]
    unit: list[str]
    pack: FloatArray
    stock: FloatArray  # packs
    usage: FloatArray  # packs a day, (rows, WINDOW_DAYS), the last column yesterday
    in_stock: NDArray[np.bool_]
    first_day: IntArray
    shelf_life: FloatArray


def cycle_of(now: datetime, interval_s: float) -> int:
    """Return the planning cycle ``now`` falls in."""
    return int(now.timestamp() // interval_s)


def plan_households(
    connection: Connection, household_ids: Sequence[str], now: datetime, params: PolicyParams | None = None
) -> list[HouseholdPlan]:
    """Forecast and plan the households' items from their events, without writing anything."""
    items = _load(connection, list(household_ids), now)
    if not items.code:
        return [HouseholdPlan(h, []) for h in household_ids]
    prior = _prior(items)
    result = forecast(
        items.usage,
        items.first_day,
        prior,
        last_weekday=(now.date() - timedelta(days=1)).weekday(),
        in_stock=items.in_stock,
    )
    retail_pack, price = _retail(connection, items)
    on_order = _on_order(connection, items, retail_pack, now)
    spent = _spent(connection, items.households, now)
    decision = plan(
        PlanItems(
            items.household,
            items.stock,
            on_order,
            items.shelf_life,
            pack=retail_pack,
            price=price,
            spent=spent,
        ),
        result,
        params,
    )
    return _explain(items, result, decision, retail_pack, now.date())


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
    elif status not in ("suggested", "proposed"):
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
    if status not in ("suggested", "proposed") or not _move(connection, order_id, status, "skipped"):
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


def _load(connection: Connection, household_ids: list[str], now: datetime) -> _Items:
    """Read the households' events into arrays: totals in SQL, the window's events one by one."""
    start = now.date() - timedelta(days=WINDOW_DAYS)
    since = datetime.combine(start, time(), UTC)
    events = EVENTS.c
    mine = (events.household_id.in_(household_ids), events.code.is_not(None))
    added = case((events.type == "item_added", events.quantity_delta))
    totals = connection.execute(
        select(
            events.household_id,
            events.code,
            func.sum(events.quantity_delta),
            func.min(events.occurred_at),
            func.max(added),
        )
        .where(*mine)
        .group_by(events.household_id, events.code)
        .order_by(events.household_id, events.code)
    ).all()
    index = {h: i for i, h in enumerate(household_ids)}
    row_of = {(str(h), str(c)): row for row, (h, c, *_rest) in enumerate(totals)}
    n = len(totals)
    pack = np.asarray([float(biggest) if biggest and biggest > 0 else 1.0 for *_r, biggest in totals])
    total = np.asarray([float(t) for _h, _c, t, _f, _b in totals])
    first = [_day(f) for _h, _c, _t, f, _b in totals]
    units = ["unit"] * n
    lives: list[list[float]] = [[] for _ in range(n)]
    usage = np.zeros((n, WINDOW_DAYS))
    change = np.zeros((n, WINDOW_DAYS))  # the stock's change on each day of the window
    window = connection.execute(
        select(
            events.household_id,
            events.code,
            events.type,
            events.quantity_delta,
            events.occurred_at,
            events.payload,
        )
        .where(*mine, events.occurred_at >= since)
        .order_by(events.occurred_at)
    ).all()
    for household_id, code, kind, delta, occurred, payload in window:
        row = row_of[(str(household_id), str(code))]
        day = _day(occurred)
        offset = (day - start).days  # WINDOW_DAYS is today: in the stock, not yet in a day's use
        column = min(max(offset, 0), WINDOW_DAYS - 1)
        change[row, column] += float(delta)
        if kind in ("item_added", "item_consumed"):
            body = json.loads(payload)
            units[row] = str(body.get("unit", units[row]))
            if kind == "item_consumed" and offset < WINDOW_DAYS:
                usage[row, column] -= float(delta)
            elif body.get("best_before"):
                lives[row].append(float((date.fromisoformat(body["best_before"]) - day).days))
    # The stock as each day began: the total, less every change from that day on.
    level = total[:, None] - np.cumsum(change[:, ::-1], axis=1)[:, ::-1]
    first_day = np.asarray([max((d - start).days, 0) for d in first], dtype=np.int64)
    shelf_life = np.asarray([float(np.median(life)) if life else DEFAULT_SHELF_LIFE_DAYS for life in lives])
    return _Items(
        households=household_ids,
        household=np.asarray([index[str(h)] for h, *_rest in totals], dtype=np.int64),
        code=[str(c) for _h, c, *_rest in totals],
        unit=units,
        pack=pack,
        stock=np.maximum(total / pack, 0.0),
        usage=usage / pack[:, None],
        in_stock=level > 1e-9,
        first_day=first_day,
        shelf_life=np.maximum(shelf_life, 1.0),
    )


def _on_order(connection: Connection, items: _Items, retail_pack: FloatArray, now: datetime) -> FloatArray:
    """Return the packs of each row on their way: in open orders with the retailer, and in baskets
    proposed or approved lately that no order was placed for."""
    baskets, basket_lines = PLANNED_ORDERS.c, PLANNED_ORDER_LINES.c
    placed = select(ORDERS.c.planned_order_id).where(ORDERS.c.planned_order_id.is_not(None))
    rows = connection.execute(
        select(baskets.household_id, basket_lines.code, basket_lines.packs)
        .join(PLANNED_ORDER_LINES, basket_lines.order_id == baskets.id)
        .where(
            baskets.household_id.in_(items.households),
            baskets.status.in_(["proposed", "approved"]),
            baskets.created_at >= now - ON_ORDER_FOR,
            baskets.id.not_in(placed),
        )
    ).all()
    index = {h: i for i, h in enumerate(items.households)}
    row_of = {(int(h), c): r for r, (h, c) in enumerate(zip(items.household, items.code, strict=True))}
    packs = np.zeros(len(items.code))
    for household, code, count in rows:
        row = row_of.get((index[str(household)], str(code)))
        if row is not None:
            packs[row] += float(count)
    # Orders with the retailer, in the household's packs (a line's count is in the retailer's).
    lines = ORDER_LINES.c
    ordered = connection.execute(
        select(ORDERS.c.household_id, lines.gtin, lines.quantity, lines.substitute_gtin, lines.substitution)
        .join(ORDER_LINES, lines.order_id == ORDERS.c.id)
        .where(ORDERS.c.household_id.in_(items.households), ORDERS.c.status.in_(OPEN_ORDER_STATUSES))
    ).all()
    for household, code, count, substitute, substitution in ordered:
        if substitution == "rejected":
            continue
        coming = substitute if substitution == "approved" and substitute else code
        row = row_of.get((index[str(household)], str(coming)))
        if row is not None:
            packs[row] += float(count) * retail_pack[row]
    return packs


def _retail(connection: Connection, items: _Items) -> tuple[FloatArray, FloatArray]:
    """Return, per row, the household's retailer's pack (in the household's packs) and its price.

    A household without a retailer, or a product its retailer does not sell in the same unit, gets
    a pack of one and no price: the basket is then a shopping list of the household's own packs.
    """
    pack, price = np.ones(len(items.code)), np.zeros(len(items.code))
    retailers = dict(
        connection.execute(
            select(HOUSEHOLDS.c.id, HOUSEHOLDS.c.retailer_id).where(
                HOUSEHOLDS.c.id.in_(items.households), HOUSEHOLDS.c.retailer_id.is_not(None)
            )
        ).all()
    )
    if not retailers:
        return pack, price
    catalog = CATALOG_ITEMS.c
    offers = {
        (str(r), str(g)): (float(size), float(cost), str(unit))
        for r, g, size, cost, unit in connection.execute(
            select(catalog.retailer_id, catalog.gtin, catalog.pack_size, catalog.price, catalog.unit).where(
                catalog.retailer_id.in_(set(retailers.values())),
                catalog.gtin.in_(set(items.code)),
                catalog.available,
            )
        ).all()
    }
    for row, code in enumerate(items.code):
        retailer = retailers.get(items.households[int(items.household[row])])
        offer = offers.get((str(retailer), code)) if retailer is not None else None
        if offer is None:
            continue
        size, cost, unit = offer
        if unit == items.unit[row] and items.pack[row] > 0:
            pack[row] = max(size / float(items.pack[row]), 1e-3)
        price[row] = cost
    return pack, price


def _spent(connection: Connection, households: list[str], now: datetime) -> FloatArray:
    """Return what each household's orders this calendar month cost (not rejected or cancelled)."""
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    totals = dict(
        connection.execute(
            select(ORDERS.c.household_id, func.sum(ORDERS.c.total))
            .where(
                ORDERS.c.household_id.in_(households),
                ORDERS.c.created_at >= month,
                ORDERS.c.status.not_in(["rejected", "cancelled"]),
            )
            .group_by(ORDERS.c.household_id)
        ).all()
    )
    return np.asarray([float(totals.get(h) or 0.0) for h in households])


def _day(moment: datetime) -> date:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def _prior(items: _Items) -> FloatArray:
    """Return each row's prior: the product's mean use a day over this batch's households."""
    observed = np.maximum(WINDOW_DAYS - items.first_day, 1).astype(np.float64)
    rates = items.usage.sum(axis=1) / observed
    by_code: dict[str, list[float]] = {}
    for row, code in enumerate(items.code):
        if observed[row] >= PRIOR_MIN_DAYS:
            by_code.setdefault(code, []).append(float(rates[row]))
    overall = float(np.mean(rates)) if len(rates) else FALLBACK_RATE
    fallback = overall if overall > 0 else FALLBACK_RATE
    prior = [float(np.mean(by_code[c])) if c in by_code else fallback for c in items.code]
    result: FloatArray = np.maximum(np.asarray(prior), 1e-3)
    return result


def _explain(
    items: _Items, result: Forecast, decision: Plan, retail_pack: FloatArray, today: date
) -> list[HouseholdPlan]:
    """Turn the arrays back into each household's items, with the reason in words."""
    plans = [HouseholdPlan(h, []) for h in items.households]
    for row, code in enumerate(items.code):
        pack, unit = float(items.pack[row]), items.unit[row]
        p10, p50, p90 = (float(d) for d in decision.days_left[row])
        due_in = float(decision.reorder_in_days[row])
        reorder_on = None if not np.isfinite(due_in) else today + timedelta(days=int(due_in))
        packs = int(decision.quantity[row])
        plans[int(items.household[row])].items.append(
            ItemPlan(
                code=code,
                unit=unit,
                pack=pack,
                stock=float(items.stock[row]) * pack,
                rate=float(result.rate[row]) * pack,
                sd=float(result.sd[row]) * pack,
                days_left=(p10, p50, p90),
                reorder_on=reorder_on,
                packs=packs,
                retail_pack=float(retail_pack[row]) * pack,
                reason=_reason(p10, p50, p90, packs, bool(decision.capped[row]), today),
            )
        )
    return plans


def _reason(p10: float, p50: float, p90: float, packs: int, capped: bool, today: date) -> str:
    """Say in words why the item is, or is not, in the basket."""
    if not np.isfinite(p50):
        return "not used lately: nothing to order"
    if p50 < 0.5:
        runs_out = "has run out"
    else:
        day = today + timedelta(days=round(p50))
        runs_out = f"runs out on {day:%A} {day.day} {day:%B} (between {p10:.0f} and {p90:.0f} days from now)"
    if packs == 0:
        return f"{runs_out}; early enough to order later"
    wasted = "; no more than is used before best-before" if capped else ""
    return f"{runs_out}: order {packs} pack{'s' if packs > 1 else ''} now{wasted}"
