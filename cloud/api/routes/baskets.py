"""The planner's baskets for a household: its shopping list, its planned orders, and its answers
to them (approve, cancel, skip). The rules live in ``cloud/commerce/baskets.py``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Connection, select
from sqlmodel import Session

from cloud.api.dependencies import HOUSEHOLD_ERRORS, MAX_PAGE, OWN, ClockDep, SessionDep, household_or_404
from cloud.api.schemas.common import ErrorPublic
from cloud.api.schemas.households import PlannedOrderPublic, ShoppingLinePublic, ShoppingListPublic
from cloud.commerce.baskets import approve_order, cancel_order, skip_order
from cloud.db.tables import ORDERS, PLANNED_ORDER_LINES, PLANNED_ORDERS
from cloud.errors import OrderStateError
from cloud.planning.planner import plan_households
from shared.vocabulary import BasketStatus

__all__ = ["router"]

router = APIRouter(tags=["households"])

PLANNED_ORDER_ERRORS = {
    **HOUSEHOLD_ERRORS,
    409: {"model": ErrorPublic, "description": "The basket's state does not allow this; says which it is."},
}
# The baskets a shopping list shows: the newest the household has not skipped or cancelled.
LISTED: tuple[BasketStatus, ...] = ("suggested", "proposed", "approved")


@router.get("/households/{household_id}/shopping-list", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def get_shopping_list(household_id: str, session: SessionDep, clock: ClockDep) -> ShoppingListPublic:
    """Return the planner's latest basket for the household, or the one it would make now."""
    household_or_404(session, household_id)
    order = session.execute(
        select(PLANNED_ORDERS)
        .where(PLANNED_ORDERS.c.household_id == household_id, PLANNED_ORDERS.c.status.in_(LISTED))
        .order_by(PLANNED_ORDERS.c.created_at.desc())
        .limit(1)
    ).first()
    if order is not None:
        stored = _planned_order(session, household_id, order.id)
        return ShoppingListPublic(
            household_id=household_id,
            order_id=stored.id,
            status=stored.status,
            cycle=stored.cycle,
            created_at=stored.created_at,
            cancellable_until=stored.cancellable_until,
            lines=stored.lines,
        )
    (household,) = plan_households(session.connection(), [household_id], clock.now())
    return ShoppingListPublic(
        household_id=household_id,
        order_id=None,
        status=None,
        cycle=None,
        created_at=None,
        cancellable_until=None,
        lines=[
            ShoppingLinePublic.model_validate(item, from_attributes=True)
            for item in sorted(household.basket, key=lambda i: i.code)
        ],
    )


@router.get("/households/{household_id}/planned-orders", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def list_planned_orders(
    household_id: str, session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20
) -> list[PlannedOrderPublic]:
    """Return the planner's baskets for the household, newest first."""
    household_or_404(session, household_id)
    ids = session.execute(
        select(PLANNED_ORDERS.c.id)
        .where(PLANNED_ORDERS.c.household_id == household_id)
        .order_by(PLANNED_ORDERS.c.created_at.desc(), PLANNED_ORDERS.c.id)
        .limit(limit)
    ).scalars()
    return [_planned_order(session, household_id, str(order_id)) for order_id in ids]


@router.post(
    "/households/{household_id}/planned-orders/{order_id}/approve",
    dependencies=OWN,
    responses=PLANNED_ORDER_ERRORS,
)
def approve_planned_order(
    household_id: str, order_id: str, session: SessionDep, clock: ClockDep
) -> PlannedOrderPublic:
    """Approve a proposed basket; its order goes to the household's retailer, if it has one.
    409 names the state if it is not proposed."""
    return _change(session, household_id, order_id, approve_order, clock.now())


@router.post(
    "/households/{household_id}/planned-orders/{order_id}/cancel",
    dependencies=OWN,
    responses=PLANNED_ORDER_ERRORS,
)
def cancel_planned_order(
    household_id: str, order_id: str, session: SessionDep, clock: ClockDep
) -> PlannedOrderPublic:
    """Cancel a suggested or proposed basket, or an automatic one within 24 hours; else 409."""
    return _change(session, household_id, order_id, cancel_order, clock.now())


@router.post(
    "/households/{household_id}/planned-orders/{order_id}/skip",
    dependencies=OWN,
    responses=PLANNED_ORDER_ERRORS,
)
def skip_planned_order(
    household_id: str, order_id: str, session: SessionDep, clock: ClockDep
) -> PlannedOrderPublic:
    """Skip a suggested or proposed basket: nothing is ordered this cycle; else 409."""
    return _change(session, household_id, order_id, skip_order, clock.now())


def _change(
    session: Session,
    household_id: str,
    order_id: str,
    action: Callable[[Connection, str, str, datetime], str | None],
    now: datetime,
) -> PlannedOrderPublic:
    household_or_404(session, household_id)
    try:
        found = action(session.connection(), household_id, order_id, now)
    except OrderStateError as exc:
        raise HTTPException(409, str(exc)) from None
    if found is None:
        raise HTTPException(404, f"household {household_id!r} has no planned order {order_id!r}")
    session.commit()
    return _planned_order(session, household_id, order_id)


def _planned_order(session: Session, household_id: str, order_id: str) -> PlannedOrderPublic:
    """Return the household's basket with its lines and the id of the order placed for it."""
    # The placed order's id comes in the same statement as the status: on PostgreSQL each
    # statement sees its own snapshot, and an approval committing in between would show a
    # proposed basket that already has an order.
    placed_id = select(ORDERS.c.id).where(ORDERS.c.planned_order_id == PLANNED_ORDERS.c.id).scalar_subquery()
    order = session.execute(
        select(PLANNED_ORDERS, placed_id.label("placed_id")).where(
            PLANNED_ORDERS.c.id == order_id, PLANNED_ORDERS.c.household_id == household_id
        )
    ).first()
    if order is None:
        raise HTTPException(404, f"household {household_id!r} has no planned order {order_id!r}")
    lines = session.execute(
        select(PLANNED_ORDER_LINES)
        .where(PLANNED_ORDER_LINES.c.order_id == order_id)
        .order_by(PLANNED_ORDER_LINES.c.code)
    ).all()
    return PlannedOrderPublic(
        id=order.id,
        order_id=order.placed_id,
        household_id=household_id,
        cycle=order.cycle,
        status=order.status,
        created_at=order.created_at,
        cancellable_until=order.cancellable_until,
        lines=[ShoppingLinePublic.model_validate(line, from_attributes=True) for line in lines],
    )
