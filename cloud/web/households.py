"""What the household's page (``/web/households/{id}``, ``cloud/web/pages.py``) shows: its lots by
location with expiry badges, what runs out soonest on a p10/p50/p90 chart, the baskets awaiting an
answer, its alerts, orders, offers and consents. Only the household's own rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, select

from cloud.commerce import consents
from cloud.db.engine import as_utc
from cloud.db.tables import (
    EVENTS,
    HOUSEHOLDS,
    OFFERS,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
    RETAILERS,
)
from cloud.planning import lots
from cloud.planning.lots import product_names
from cloud.planning.planner import plan_households
from shared.messages import AlertCleared, AlertRaised, decode_event
from shared.vocabulary import CONSENT_PURPOSES, OPEN_BASKET_STATUSES

# The forecast chart's scale, in days, and width, in pixels.
CHART_DAYS = 14
MAX_CHART_DAYS = 42
CHART_WIDTH = 180
# A lot due within this many days gets the "soon" badge.
SOON_DAYS = 2
# What each kind of alert is called on the page.
ALERT_NAMES = {
    "expiring": "About to expire",
    "expired": "Expired",
    "temperature_high": "Fridge too warm",
    "door_open": "Door left open",
}
# The alerts that call for action now get the "expired" badge; the rest the "soon" one.
URGENT_ALERTS = ("expired", "temperature_high")


@dataclass(frozen=True, slots=True)
class LotView:
    """A lot as the page shows it: the replayed lot and its expiry badge."""

    code: str
    name: str
    quantity: float
    unit: str
    best_before: date | None
    opened: bool
    badge: str
    badge_text: str

    @classmethod
    def of(cls, lot: lots.Lot, today: date) -> LotView:
        badge, badge_text = expiry(lot.best_before, today)
        return cls(
            code=lot.code,
            name=lot.name,
            quantity=lot.quantity,
            unit=lot.unit,
            best_before=lot.best_before,
            opened=lot.opened,
            badge=badge,
            badge_text=badge_text,
        )


@dataclass(frozen=True, slots=True)
class InventoryView:
    """The inventory section: the household's lots by location, and the id of the last event they
    include (the page's live stream goes on from there)."""

    by_location: dict[str, list[LotView]]
    last_event_id: int

    @property
    def count(self) -> int:
        return sum(len(held) for held in self.by_location.values())


def expiry(best_before: date | None, today: date) -> tuple[str, str]:
    """Return the badge (expired, soon, ok or none) and its text for a best-before date."""
    if best_before is None:
        return "none", "no date"
    days = (best_before - today).days
    if days < 0:
        return "expired", f"expired {-days} d ago"
    if days == 0:
        return "soon", "use today"
    if days <= SOON_DAYS:
        return "soon", f"{days} d left"
    return "ok", f"{days} d left"


def _today(connection: Connection, household_id: str, now: datetime) -> date:
    """Return the household's date at ``now`` in its time zone (UTC if that zone is unknown)."""
    zone = connection.execute(select(HOUSEHOLDS.c.timezone).where(HOUSEHOLDS.c.id == household_id)).scalar()
    try:
        return as_utc(now).astimezone(ZoneInfo(str(zone or "UTC"))).date()
    except (ZoneInfoNotFoundError, ValueError):
        return as_utc(now).date()


def inventory(connection: Connection, household_id: str, now: datetime) -> InventoryView:
    """Return the household's lots by location, each with its expiry badge as of ``now``."""
    found = lots.inventory(connection, household_id)
    today = _today(connection, household_id, now)
    return InventoryView(
        by_location={
            location: [LotView.of(lot, today) for lot in held] for location, held in found.by_location.items()
        },
        last_event_id=found.last_event_id,
    )


def _x(days: float, scale: int) -> float:
    """Return where ``days`` falls on a forecast chart of ``scale`` days."""
    days = scale if not math.isfinite(days) else min(max(days, 0.0), scale)
    return round(days / scale * CHART_WIDTH, 1)


def chart_scale(p90s: list[float]) -> int:
    """Return the forecast chart's scale in days: whole weeks that hold the p90s, 2 to 6 of them."""
    finite = [d for d in p90s if math.isfinite(d)]
    weeks = math.ceil(max(finite, default=0.0) / 7)
    return 7 * min(max(weeks, CHART_DAYS // 7), MAX_CHART_DAYS // 7)


def _days(days: float) -> str:
    return "never" if not math.isfinite(days) else f"{days:.1f}"


def running_out(
    connection: Connection, household_id: str, now: datetime, limit: int = 8
) -> tuple[int, list[dict[str, Any]]]:
    """Return the forecast chart's scale in days and the household's products that run out soonest,
    with p10/p50/p90 days and their places on the chart."""
    (plan,) = plan_households(connection, [household_id], now)
    items = sorted(
        (item for item in plan.items if math.isfinite(item.days_left[1])),
        key=lambda i: (i.days_left[1], i.code),
    )[:limit]
    names = product_names(connection, household_id, {item.code for item in items})
    scale = chart_scale([item.days_left[2] for item in items])
    return scale, [
        {
            "code": item.code,
            "name": names.get(item.code, item.code),
            "stock": round(item.stock, 2),
            "unit": item.unit,
            "p10": _days(item.days_left[0]),
            "p50": _days(item.days_left[1]),
            "p90": _days(item.days_left[2]),
            "x10": _x(item.days_left[0], scale),
            "x50": _x(item.days_left[1], scale),
            "x90": _x(item.days_left[2], scale),
            "reason": item.reason,
        }
        for item in items
    ]


def baskets(connection: Connection, household_id: str, now: datetime) -> list[dict[str, Any]]:
    """Return the baskets awaiting the household: suggested or proposed, or automatic ones that can
    still be cancelled."""
    rows = connection.execute(
        select(PLANNED_ORDERS)
        .where(PLANNED_ORDERS.c.household_id == household_id)
        .order_by(PLANNED_ORDERS.c.created_at.desc(), PLANNED_ORDERS.c.id)
        .limit(20)
    ).all()
    waiting = [
        row
        for row in rows
        if row.status in OPEN_BASKET_STATUSES
        or (
            row.status == "approved"
            and row.cancellable_until is not None
            and as_utc(row.cancellable_until) > as_utc(now)
        )
    ]
    result = []
    for row in waiting:
        lines = connection.execute(
            select(PLANNED_ORDER_LINES)
            .where(PLANNED_ORDER_LINES.c.order_id == row.id)
            .order_by(PLANNED_ORDER_LINES.c.code)
        ).all()
        names = product_names(connection, household_id, {str(line.code) for line in lines})
        result.append(
            {
                "id": row.id,
                "status": row.status,
                "created_at": as_utc(row.created_at),
                "cancellable_until": None if row.cancellable_until is None else as_utc(row.cancellable_until),
                "lines": [
                    {
                        "name": names.get(line.code, line.code),
                        "packs": line.packs,
                        "quantity": line.quantity,
                        "unit": line.unit,
                        "reason": line.reason,
                    }
                    for line in lines
                ],
            }
        )
    return result


def alerts(connection: Connection, household_id: str) -> list[dict[str, Any]]:
    """Return the alerts the household's fridges raised and have not cleared, newest first."""
    payloads = connection.execute(
        select(EVENTS.c.payload)
        .where(EVENTS.c.household_id == household_id, EVENTS.c.type.in_(["alert_raised", "alert_cleared"]))
        .order_by(EVENTS.c.occurred_at, EVENTS.c.id)
    ).scalars()
    holding: dict[tuple[str, str, str], AlertRaised] = {}
    for payload in payloads.all():
        event = decode_event(payload)
        if not isinstance(event, AlertRaised | AlertCleared):
            continue
        key = (event.device_id, event.kind, event.subject)
        if isinstance(event, AlertCleared):
            holding.pop(key, None)
        else:
            holding[key] = event
    return [
        {
            "kind": ALERT_NAMES.get(alert.kind, alert.kind),
            "severity": "expired" if alert.kind in URGENT_ALERTS else "soon",
            "detail": alert.detail,
            "since": alert.since,
            "fridge": alert.device_id,
        }
        for alert in sorted(holding.values(), key=lambda alert: alert.since, reverse=True)
    ]


def _orders(connection: Connection, household_id: str) -> list[dict[str, Any]]:
    """Return the household's latest orders with retailers."""
    rows = connection.execute(
        select(ORDERS)
        .where(ORDERS.c.household_id == household_id)
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id)
        .limit(10)
    ).all()
    return [
        {
            "id": o.id,
            "status": o.status,
            "total": o.total,
            "currency": o.currency,
            "retailer": o.retailer_id,
            "created_at": as_utc(o.created_at),
        }
        for o in rows
    ]


def _offers(connection: Connection, household_id: str) -> list[dict[str, Any]]:
    """Return the household's latest offers, with the data each was made from."""
    rows = connection.execute(
        select(OFFERS)
        .where(OFFERS.c.household_id == household_id)
        .order_by(OFFERS.c.created_at.desc(), OFFERS.c.id)
        .limit(20)
    ).all()
    return [
        {
            "id": o.id,
            "name": o.name,
            "retailer": o.retailer_id,
            "category": o.category,
            "reason": o.reason,
            "data": [c for c in str(o.data_categories).split(",") if c],
            "status": o.status,
            "expires_at": as_utc(o.expires_at),
        }
        for o in rows
    ]


def _consents(connection: Connection, household_id: str, now: datetime) -> list[dict[str, Any]]:
    """Return, for every retailer, the grant of each purpose active at ``now`` (or None)."""
    retailers = connection.execute(select(RETAILERS.c.id, RETAILERS.c.name).order_by(RETAILERS.c.name)).all()
    active: dict[tuple[str, str], consents.Grant] = {}
    for grant in consents.ledger(connection, household_id):
        if grant.active_at(now):
            active.setdefault((grant.recipient, grant.purpose), grant)
    return [
        {
            "retailer": r.id,
            "name": r.name,
            "purposes": [{"purpose": p, "grant": active.get((str(r.id), p))} for p in CONSENT_PURPOSES],
        }
        for r in retailers
    ]


def dashboard(connection: Connection, household_id: str, now: datetime) -> dict[str, Any]:
    """Return everything the household's page shows."""
    scale, soonest = running_out(connection, household_id, now)
    return {
        "inventory": inventory(connection, household_id, now),
        "alerts": alerts(connection, household_id),
        "running_out": soonest,
        "chart_width": CHART_WIDTH,
        "chart_days": scale,
        "baskets": baskets(connection, household_id, now),
        "orders": _orders(connection, household_id),
        "offers": _offers(connection, household_id),
        "consents": _consents(connection, household_id, now),
    }
