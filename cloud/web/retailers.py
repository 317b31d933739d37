"""What the retailer's dashboard page (``/web/retailer``, ``cloud/web/pages.py``) shows: its order
queue with the moves each order allows, a summary of its catalog, its campaigns' A/B results with a
chart of conversion, and its webhook endpoints with their delivery logs. Only the retailer's own rows.
``marks`` tells the page's live stream which sections changed, in digests that carry no figure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from cloud.api.routes.campaigns import campaign_public
from cloud.commerce import campaigns
from cloud.db.engine import as_utc
from cloud.db.tables import (
    CAMPAIGN_ASSIGNMENTS,
    CAMPAIGNS,
    CATALOG_ITEMS,
    OFFERS,
    ORDERS,
    RETAILERS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
)
from shared.vocabulary import RETAILER_MOVES

# The queue's statuses in the order the page shows them: work to do first, finished last.
STATUSES = (
    "created",
    "accepted",
    "picking",
    "substitution_proposed",
    "dispatched",
    "delivered",
    "rejected",
    "cancelled",
)
# The moves the page offers, with their buttons' words (a substitution needs its products: API only).
MOVES = {
    "accepted": "Accept",
    "rejected": "Reject",
    "picking": "Start picking",
    "dispatched": "Dispatch",
    "delivered": "Deliver",
    "cancelled": "Cancel",
}
QUEUE_LIMIT = 200
DELIVERY_LOG = 20
# The campaign chart: arm labels on the left, the conversion scale on the right of them.
LABEL_WIDTH = 90
BAR_WIDTH = 420
ROW_HEIGHT = 28


def moves(status: str) -> list[dict[str, str]]:
    """Return the moves the page offers from ``status``: the allowed ones that need no details."""
    return [{"type": to, "label": MOVES[to]} for to in RETAILER_MOVES.get(status, ()) if to in MOVES]


def order_queue(connection: Connection, retailer_id: str) -> list[dict[str, Any]]:
    """Return the retailer's orders by status (in STATUSES' order), newest first in each."""
    rows = connection.execute(
        select(ORDERS)
        .where(ORDERS.c.retailer_id == retailer_id)
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id)
        .limit(QUEUE_LIMIT)
    ).all()
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.status), []).append(
            {
                "id": row.id,
                "household": row.household_id,
                "status": row.status,
                "version": row.version,
                "total": row.total,
                "currency": row.currency,
                "created_at": as_utc(row.created_at),
                "moves": moves(str(row.status)),
            }
        )
    ordered = sorted(groups, key=lambda status: (*STATUSES, status).index(status))
    return [{"status": status, "orders": groups[status]} for status in ordered]


def catalog_summary(connection: Connection, retailer_id: str) -> dict[str, Any]:
    """Return how many products the retailer lists, how many are available, its categories (with
    their product counts) and its price range per currency."""
    items = CATALOG_ITEMS.c
    mine = items.retailer_id == retailer_id
    products, available = connection.execute(
        select(func.count(), func.coalesce(func.sum(case((items.available, 1), else_=0)), 0)).where(mine)
    ).one()
    categories = connection.execute(
        select(items.category, func.count()).where(mine).group_by(items.category).order_by(items.category)
    ).all()
    prices = connection.execute(
        select(items.currency, func.min(items.price), func.max(items.price))
        .where(mine)
        .group_by(items.currency)
        .order_by(items.currency)
    ).all()
    return {
        "products": int(products),
        "available": int(available),
        "categories": [{"name": name or "no category", "count": int(count)} for name, count in categories],
        "prices": [{"currency": c, "low": float(low), "high": float(high)} for c, low, high in prices],
    }


def campaign_chart_scale(highs: list[float]) -> float:
    """Return the conversion chart's end: the next tenth above every interval, at most 1."""
    return min(max(math.ceil(max(highs, default=0.0) * 10 - 1e-9), 1), 10) / 10


def campaign_results(connection: Connection, retailer_id: str, now: datetime) -> list[dict[str, Any]]:
    """Return the retailer's campaigns, newest first, with their results at ``now`` and chart rows."""
    rows = connection.execute(
        select(CAMPAIGNS)
        .where(CAMPAIGNS.c.retailer_id == retailer_id)
        .order_by(CAMPAIGNS.c.created_at.desc(), CAMPAIGNS.c.id)
    ).all()
    out = []
    for row in rows:
        found = campaigns.results(connection, retailer_id, str(row.id), now)
        assert found is not None  # the campaign is the retailer's
        arms = [asdict(arm) for arm in found.arms]
        scale = campaign_chart_scale([arm["converted"]["high"] or 0.0 for arm in arms])

        def x(rate: float | None, scale: float = scale) -> float:
            return round(LABEL_WIDTH + (rate or 0.0) / scale * BAR_WIDTH, 1)

        for index, arm in enumerate(arms):
            conversion = arm["converted"]
            arm["y"] = index * ROW_HEIGHT
            arm["charted"] = not arm["withheld"] and conversion["rate"] is not None
            if arm["charted"]:
                arm["x"], arm["x_low"], arm["x_high"] = (
                    x(conversion["rate"]),
                    x(conversion["low"]),
                    x(conversion["high"]),
                )
        out.append(
            {
                "campaign": campaign_public(row),
                "arms": arms,
                "winner": found.winner,
                "verdict": found.verdict,
                "scale": scale,
                "ticks": [
                    {"x": x(scale * step / 5), "label": f"{scale * step / 5:.0%}"} for step in range(6)
                ],
                "height": len(arms) * ROW_HEIGHT + 20,
            }
        )
    return out


def webhook_log(connection: Connection, retailer_id: str) -> list[dict[str, Any]]:
    """Return the retailer's webhook endpoints, each with its latest deliveries, newest first."""
    endpoints = connection.execute(
        select(WEBHOOK_ENDPOINTS)
        .where(WEBHOOK_ENDPOINTS.c.retailer_id == retailer_id)
        .order_by(WEBHOOK_ENDPOINTS.c.created_at, WEBHOOK_ENDPOINTS.c.id)
    ).all()
    table = WEBHOOK_DELIVERIES.c
    return [
        {
            "id": endpoint.id,
            "url": endpoint.url,
            "disabled_at": None if endpoint.disabled_at is None else as_utc(endpoint.disabled_at),
            "disabled_reason": endpoint.disabled_reason,
            "deliveries": [
                {
                    "id": row.id,
                    "event_type": row.event_type,
                    "status": row.status,
                    "attempts": row.attempts,
                    "last_status_code": row.last_status_code,
                    "created_at": as_utc(row.created_at),
                }
                for row in connection.execute(
                    select(WEBHOOK_DELIVERIES)
                    .where(table.endpoint_id == endpoint.id)
                    .order_by(table.created_at.desc(), table.id)
                    .limit(DELIVERY_LOG)
                ).all()
            ],
        }
        for endpoint in endpoints
    ]


def marks(connection: Connection, retailer_id: str) -> dict[str, str]:
    """Return a mark per live section of the page that changes whenever what the section shows does.

    Each mark is an opaque digest (:func:`digest`), never a count: the page and its stream carry no
    figure the page does not show. Orders: every move raises an order's version, so their count and
    the versions' sum. Webhooks: the endpoints' states and the deliveries' attempts and outcomes.
    Campaigns: their stops and, per arm the page shows, its households, offers made and answered;
    of an arm withheld (fewer than MIN_HOUSEHOLDS households) only that it is withheld, so that
    nothing of it moves the mark: no reload tells when one of its households joins or answers.
    Conversions, which come from the fridges' events, show at the next of these or on reload.
    """
    orders = connection.execute(
        select(func.count(), func.coalesce(func.sum(ORDERS.c.version), 0)).where(
            ORDERS.c.retailer_id == retailer_id
        )
    ).one()
    endpoints = WEBHOOK_ENDPOINTS.c
    mine = select(endpoints.id).where(endpoints.retailer_id == retailer_id).scalar_subquery()
    hooks = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((endpoints.disabled_at.is_(None), 0), else_=1)), 0),
            func.max(endpoints.previous_until),
        ).where(endpoints.retailer_id == retailer_id)
    ).one()
    sent = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(WEBHOOK_DELIVERIES.c.attempts), 0),
            func.coalesce(func.sum(case((WEBHOOK_DELIVERIES.c.status == "pending", 0), else_=1)), 0),
        ).where(WEBHOOK_DELIVERIES.c.endpoint_id.in_(mine))
    ).one()
    return {
        "orders": digest(retailer_id, "orders", list(orders)),
        "webhooks": digest(retailer_id, "webhooks", [*hooks, *sent]),
        "campaigns": digest(retailer_id, "campaigns", _campaign_figures(connection, retailer_id)),
    }


def _campaign_figures(connection: Connection, retailer_id: str) -> list[Any]:
    """Return what the campaigns section shows that can change: each campaign's stop, and the
    households, offers and answers of each arm it does not withhold."""
    theirs = select(CAMPAIGNS.c.id).where(CAMPAIGNS.c.retailer_id == retailer_id).scalar_subquery()
    table = CAMPAIGN_ASSIGNMENTS.c
    households = {
        (str(campaign), str(arm)): int(n)
        for campaign, arm, n in connection.execute(
            select(table.campaign_id, table.arm, func.count())
            .where(table.campaign_id.in_(theirs))
            .group_by(table.campaign_id, table.arm)
        ).all()
    }
    answers = {
        (str(campaign), str(arm)): (int(made), int(answered))
        for campaign, arm, made, answered in connection.execute(
            select(OFFERS.c.campaign_id, OFFERS.c.arm, func.count(), func.count(OFFERS.c.answered_at))
            .where(OFFERS.c.campaign_id.in_(theirs))
            .group_by(OFFERS.c.campaign_id, OFFERS.c.arm)
        ).all()
    }
    stops = connection.execute(
        select(CAMPAIGNS.c.id, CAMPAIGNS.c.stopped_at.is_not(None))
        .where(CAMPAIGNS.c.retailer_id == retailer_id)
        .order_by(CAMPAIGNS.c.id)
    ).all()
    figures: list[Any] = []
    for campaign, stopped in stops:
        arms = sorted({arm for (c, arm) in (*households, *answers) if c == campaign})
        shown = [
            [arm, households.get((campaign, arm), 0), *answers.get((campaign, arm), (0, 0))]
            if households.get((campaign, arm), 0) >= campaigns.MIN_HOUSEHOLDS
            else [arm, "withheld"]
            for arm in arms
        ]
        figures.append([str(campaign), bool(stopped), shown])
    return figures


# The marks' key, drawn by each worker when it starts: without it, a digest of small counts could be
# reversed by trying them all. A page read from one worker and streamed from another sees every
# section as changed once and reloads it; a key shared through the database would spare that.
_MARK_KEY = secrets.token_bytes(32)
# 64 bits of HMAC-SHA256: two states of a section share a mark once in 2**64.
MARK_HEX = 16


def digest(retailer_id: str, section: str, figures: list[Any]) -> str:
    """Return the mark of what a section shows: a keyed digest (HMAC-SHA256, hex, truncated)."""
    message = json.dumps([retailer_id, section, figures], default=str, separators=(",", ":"))
    return hmac.new(_MARK_KEY, message.encode(), hashlib.sha256).hexdigest()[:MARK_HEX]


def retailer_dashboard(connection: Connection, retailer_id: str, now: datetime) -> dict[str, Any]:
    """Return everything the retailer's page shows at ``now`` (the worker's clock), and its marks,
    taken first: a change made while the page is read then reaches the page through its stream."""
    found = marks(connection, retailer_id)
    name = connection.execute(select(RETAILERS.c.name).where(RETAILERS.c.id == retailer_id)).scalar()
    return {
        "marks": found,
        "retailer_id": retailer_id,
        "retailer_name": str(name or retailer_id),
        "queue": order_queue(connection, retailer_id),
        "catalog": catalog_summary(connection, retailer_id),
        "campaigns": campaign_results(connection, retailer_id, now),
        "webhooks": webhook_log(connection, retailer_id),
        "chart_width": LABEL_WIDTH + BAR_WIDTH + 10,
        "label_width": LABEL_WIDTH,
        "row_height": ROW_HEIGHT,
        "min_households": campaigns.MIN_HOUSEHOLDS,
    }
