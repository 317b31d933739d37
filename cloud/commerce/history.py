"""What a household's rows say it has, gets and wants, for the offers it is made.

What it bought lately (its fridges took it in), what is on its way (open orders, baskets proposed
or approved), what it was offered lately, and which categories it turned offers off for.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import Connection, select

from cloud.db.tables import (
    EVENTS,
    OFFER_SUPPRESSIONS,
    OFFERS,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
)
from shared.vocabulary import OPEN_ORDER_STATUSES, BasketStatus

__all__ = ["bought", "offered", "on_order", "suppressed"]

# Baskets whose products count as on their way (the household may shop a proposal itself).
ON_ITS_WAY: tuple[BasketStatus, ...] = ("proposed", "approved")


def bought(connection: Connection, household: str, since: datetime) -> set[str]:
    """Return the products the household's fridges took in since ``since``."""
    rows = connection.execute(
        select(EVENTS.c.code).where(
            EVENTS.c.household_id == household, EVENTS.c.type == "item_added", EVENTS.c.occurred_at >= since
        )
    ).scalars()
    return {str(code) for code in rows if code is not None}


def on_order(connection: Connection, household: str, since: datetime) -> set[str]:
    """Return the products on their way to the household: in its open orders, or in a basket it was
    proposed or approved since ``since``."""
    ordered = connection.execute(
        select(ORDER_LINES.c.gtin)
        .join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id)
        .where(ORDERS.c.household_id == household, ORDERS.c.status.in_(OPEN_ORDER_STATUSES))
    ).scalars()
    planned = connection.execute(
        select(PLANNED_ORDER_LINES.c.code)
        .join(PLANNED_ORDERS, PLANNED_ORDERS.c.id == PLANNED_ORDER_LINES.c.order_id)
        .where(
            PLANNED_ORDERS.c.household_id == household,
            PLANNED_ORDERS.c.status.in_(ON_ITS_WAY),
            PLANNED_ORDERS.c.created_at >= since,
        )
    ).scalars()
    return {str(code) for code in itertools.chain(ordered, planned)}


def offered(connection: Connection, household: str, since: datetime) -> set[str]:
    """Return the products the household was offered since ``since``."""
    rows = connection.execute(
        select(OFFERS.c.gtin).where(OFFERS.c.household_id == household, OFFERS.c.created_at >= since)
    ).scalars()
    return {str(code) for code in rows}


def suppressed(connection: Connection, household: str) -> set[str]:
    """Return the categories the household turned offers off for."""
    rows = connection.execute(
        select(OFFER_SUPPRESSIONS.c.category).where(OFFER_SUPPRESSIONS.c.household_id == household)
    ).scalars()
    return {str(category) for category in rows}
