"""The planner: from the fleet's stored events to each household's forecast and basket.

:func:`plan_households` reads, per household and product, what the fridges reported (``events``:
stock as the sum of the changes, use per day from ``item_consumed``, the household's usual pack
from ``item_added``, the shelf life from its best-before date), turns it into arrays in packs, and
runs :func:`cloud.planning.forecast.forecast` and :func:`cloud.planning.replenishment.plan` on all of
them at once. It writes nothing: the baskets made of its plans, once per planning cycle
(:func:`cycle_of`), are ``cloud/commerce/baskets.py``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, case, func, select

from cloud.db.tables import (
    CATALOG_ITEMS,
    EVENTS,
    HOUSEHOLDS,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
)
from cloud.planning.forecast import Forecast, forecast
from cloud.planning.replenishment import Plan, PlanItems, PolicyParams, plan
from shared.messages import ItemAdded, ItemConsumed, decode_event
from shared.vocabulary import OPEN_ORDER_STATUSES

__all__ = ["HouseholdPlan", "ItemPlan", "cycle_of", "plan_households"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Days of use the model reads: TSB's memory is about three weeks, the weekday pattern needs six.
WINDOW_DAYS = 56
# A product whose best-before the fridge never saw keeps about a week.
DEFAULT_SHELF_LIFE_DAYS = 7.0
# Before the fleet has seen a product for four weeks, its prior is the fleet's average product.
PRIOR_MIN_DAYS = 28
FALLBACK_RATE = 0.1  # packs a day
# A basket proposed or approved, with no order placed for it, counts as on its way this long (the
# household may shop it itself): the next cycles do not order the same packs again.
ON_ORDER_FOR = timedelta(days=3)


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


def _load(connection: Connection, household_ids: list[str], now: datetime) -> _Items:
    """Read the households' events into arrays: totals in SQL, the window's events one by one."""
    start = now.date() - timedelta(days=WINDOW_DAYS)
    since = datetime.combine(start, time(), UTC)
    events = EVENTS.c
    # Both reads stop at the same stored event: on SQLite each SELECT outside a transaction sees
    # its own moment, and an event stored between them would name a product the totals lack.
    last = connection.execute(select(func.max(events.id))).scalar() or 0
    mine = (events.household_id.in_(household_ids), events.code.is_not(None), events.id <= last)
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
        if kind not in ("item_added", "item_consumed"):
            continue
        match decode_event(payload):
            case ItemConsumed(unit=unit):
                units[row] = unit
                if offset < WINDOW_DAYS:
                    usage[row, column] -= float(delta)
            case ItemAdded(unit=unit, best_before=best_before):
                units[row] = unit
                if best_before is not None:
                    lives[row].append(float((best_before - day).days))
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
