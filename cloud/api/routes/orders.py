"""The order API's order routes: a household chooses its retailer, places, reads and cancels orders
and decides on substitutions; a retailer reads its orders and reports their progress.

The rules live in ``cloud/commerce/orders.py``; this module turns them into HTTP: 404 for what the
caller has not got, 409 for a move the order's state forbids, 412 for a stale If-Match, 422 for a
request that cannot make an order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response
from pydantic import WithJsonSchema
from sqlalchemy import Connection, select
from sqlmodel import Session

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    INVALID_REQUEST,
    MAX_PAGE,
    OWN,
    RETAILER_ERRORS,
    ClockDep,
    Responses,
    RetailerDep,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas.common import ErrorPublic, InvalidRequestPublic
from cloud.api.schemas.retail import (
    HouseholdRetailerPublic,
    HouseholdRetailerUpdate,
    OrderCreate,
    OrderPublic,
    RetailerOrderEvent,
    SubstitutionDecision,
)
from cloud.commerce import consents, orders, orderviews
from cloud.commerce.orderviews import Order
from cloud.db.tables import RETAILERS
from cloud.errors import OrderInputError, OrderStateError, VersionMismatch
from shared.vocabulary import OrderStatus

__all__ = ["router"]

router = APIRouter()

ETAG = r'^(\*|(W/)?"[0-9]+")$'
IfMatch = Annotated[
    str | None,
    Header(
        pattern=ETAG,
        description='The order\'s version as its ETag, e.g. "3": the change applies only to that version.',
    ),
    # A header is a string or absent, never null.
    WithJsonSchema({"type": "string", "pattern": ETAG}),
]
ORDER_ERRORS: Responses = {
    404: {"model": ErrorPublic, "description": "No such order for this caller."},
    409: {"model": ErrorPublic, "description": "The order's state forbids this; the message names it."},
    412: {"model": ErrorPublic, "description": "If-Match named another version of the order."},
    422: {
        "model": InvalidRequestPublic,
        "description": "The request cannot make or change the order; the message says why.",
    },
}
HOUSEHOLD_ORDER_ERRORS = {**HOUSEHOLD_ERRORS, **ORDER_ERRORS}
RETAILER_ORDER_ERRORS = {**RETAILER_ERRORS, **ORDER_ERRORS}
After = Annotated[str, Query(max_length=36, description="Return orders after this one.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


# -- households ------------------------------------------------------------------------------


@router.put(
    "/households/{household_id}/retailer",
    tags=["orders"],
    dependencies=OWN,
    responses={**HOUSEHOLD_ERRORS, **BAD_BODY, **INVALID_REQUEST},
)
def set_retailer(
    household_id: str, update_: HouseholdRetailerUpdate, session: SessionDep, clock: ClockDep
) -> HouseholdRetailerPublic:
    """Choose the retailer the household's orders go to, and its substitution policy."""
    household = household_or_404(session, household_id)
    if update_.retailer_id is not None:
        found = session.execute(select(RETAILERS.c.id).where(RETAILERS.c.id == update_.retailer_id)).first()
        if found is None:
            raise HTTPException(422, f"no retailer {update_.retailer_id!r}")
    household.retailer_id = update_.retailer_id
    household.substitution_policy = update_.substitution_policy
    session.add(household)
    session.flush()
    now = clock.now()
    connection = session.connection()
    # Choosing a retailer is consenting to send it the household's orders (cloud/commerce/consents.py).
    if update_.retailer_id is not None and not consents.is_active(
        connection, household_id, update_.retailer_id, "ordering", now
    ):
        consents.grant(connection, household_id, update_.retailer_id, "ordering", now)
    session.commit()
    return HouseholdRetailerPublic(household_id=household_id, **update_.model_dump())


@router.get(
    "/households/{household_id}/retailer", tags=["orders"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
)
def get_retailer(household_id: str, session: SessionDep) -> HouseholdRetailerPublic:
    """Return the household's retailer and substitution policy."""
    household = household_or_404(session, household_id)
    return HouseholdRetailerPublic(
        household_id=household_id,
        retailer_id=household.retailer_id,
        substitution_policy=household.substitution_policy,
    )


@router.post(
    "/households/{household_id}/orders",
    tags=["orders"],
    dependencies=OWN,
    status_code=201,
    responses={**HOUSEHOLD_ORDER_ERRORS, **BAD_BODY},
)
def create_order(
    household_id: str, order: OrderCreate, session: SessionDep, response: Response, clock: ClockDep
) -> OrderPublic:
    """Place an order with the household's retailer. Send an Idempotency-Key to retry safely."""
    household_or_404(session, household_id)
    try:
        order_id = orders.create_order(
            session.connection(),
            household_id,
            [orders.Wanted(line.gtin, line.quantity) for line in order.lines],
            clock.now(),
            slot_id=order.slot_id,
        )
    except OrderInputError as exc:
        raise _http(exc) from None
    session.commit()
    placed = orderviews.view(session.connection(), order_id)
    assert placed is not None
    response.headers["Location"] = f"/households/{household_id}/orders/{order_id}"
    return _with_etag(placed, response)


@router.get(
    "/households/{household_id}/orders", tags=["orders"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
)
def list_household_orders(
    household_id: str,
    session: SessionDep,
    status: OrderStatus | None = None,
    after: After = "",
    limit: Limit = 100,
) -> list[OrderPublic]:
    """Return the household's orders, oldest first, a page at a time."""
    household_or_404(session, household_id)
    connection = session.connection()
    ids = orderviews.list_ids(connection, household_id=household_id, status=status, after=after, limit=limit)
    return [
        _public(order) for order_id in ids if (order := orderviews.view(connection, order_id)) is not None
    ]


@router.get(
    "/households/{household_id}/orders/{order_id}",
    tags=["orders"],
    dependencies=OWN,
    responses=HOUSEHOLD_ERRORS,
)
def get_household_order(
    household_id: str, order_id: str, session: SessionDep, response: Response
) -> OrderPublic:
    """Return one of the household's orders; its ETag is its version."""
    return _with_etag(_own_order(session, household_id, order_id), response)


@router.post(
    "/households/{household_id}/orders/{order_id}/cancel",
    tags=["orders"],
    dependencies=OWN,
    responses=HOUSEHOLD_ORDER_ERRORS,
)
def cancel_household_order(
    household_id: str,
    order_id: str,
    session: SessionDep,
    response: Response,
    clock: ClockDep,
    if_match: IfMatch = None,
) -> OrderPublic:
    """Cancel an order before it is dispatched; 409 names the state if it is too late."""
    _own_order(session, household_id, order_id)
    return _changed(
        session,
        response,
        if_match,
        lambda connection, version: orders.cancel(
            connection, household_id, order_id, clock.now(), if_match=version
        ),
    )


@router.post(
    "/households/{household_id}/orders/{order_id}/substitutions",
    tags=["orders"],
    dependencies=OWN,
    responses={**HOUSEHOLD_ORDER_ERRORS, **BAD_BODY},
)
def decide_substitutions(
    household_id: str,
    order_id: str,
    decision: SubstitutionDecision,
    session: SessionDep,
    response: Response,
    clock: ClockDep,
    if_match: IfMatch = None,
) -> OrderPublic:
    """Approve or reject the substitutions the retailer proposed."""
    _own_order(session, household_id, order_id)
    approve = decision.decision == "approve"
    return _changed(
        session,
        response,
        if_match,
        lambda connection, version: orders.decide_substitutions(
            connection, household_id, order_id, approve, clock.now(), if_match=version
        ),
    )


# -- retailers -------------------------------------------------------------------------------


@router.get("/retailer/orders", tags=["retailer"], responses=RETAILER_ERRORS)
def list_retailer_orders(
    retailer: RetailerDep,
    session: SessionDep,
    status: OrderStatus | None = None,
    after: After = "",
    limit: Limit = 100,
) -> list[OrderPublic]:
    """Return the retailer's orders, oldest first, optionally of one status."""
    connection = session.connection()
    ids = orderviews.list_ids(connection, retailer_id=retailer, status=status, after=after, limit=limit)
    return [
        _public(order) for order_id in ids if (order := orderviews.view(connection, order_id)) is not None
    ]


@router.get("/retailer/orders/{order_id}", tags=["retailer"], responses=RETAILER_ORDER_ERRORS)
def get_retailer_order(
    order_id: str, retailer: RetailerDep, session: SessionDep, response: Response
) -> OrderPublic:
    """Return one of the retailer's orders; its ETag is its version."""
    return _with_etag(_retailer_order(session, retailer, order_id), response)


@router.post(
    "/retailer/orders/{order_id}/events",
    tags=["retailer"],
    responses={**RETAILER_ORDER_ERRORS, **BAD_BODY},
)
def post_order_event(
    order_id: str,
    event: RetailerOrderEvent,
    retailer: RetailerDep,
    session: SessionDep,
    response: Response,
    clock: ClockDep,
    if_match: IfMatch = None,
) -> OrderPublic:
    """Report an order's progress: accepted, rejected, picking, substitution_proposed,
    dispatched, delivered or cancelled; 409 names the state if the move is not allowed."""
    _retailer_order(session, retailer, order_id)
    substitutions = [orders.Substitution(**s.model_dump()) for s in event.substitutions]
    delivered = (
        None if event.delivered is None else [orders.Delivered(**d.model_dump()) for d in event.delivered]
    )
    return _changed(
        session,
        response,
        if_match,
        lambda connection, version: orders.retailer_event(
            connection,
            retailer,
            order_id,
            event.type,
            clock.now(),
            if_match=version,
            reason=event.reason,
            substitutions=substitutions,
            delivered=delivered,
        ),
    )


# -- the one way an order becomes an answer --------------------------------------------------


def _public(order: Order) -> OrderPublic:
    return OrderPublic.model_validate(order, from_attributes=True)


def _with_etag(order: Order, response: Response) -> OrderPublic:
    response.headers["ETag"] = orderviews.etag(order.version)
    return _public(order)


def _own_order(session: Session, household_id: str, order_id: str) -> Order:
    household_or_404(session, household_id)
    order = orderviews.view(session.connection(), order_id)
    if order is None or order.household_id != household_id:
        raise HTTPException(404, f"household {household_id!r} has no order {order_id!r}")
    return order


def _retailer_order(session: Session, retailer: str, order_id: str) -> Order:
    order = orderviews.view(session.connection(), order_id)
    if order is None or order.retailer_id != retailer:
        raise HTTPException(404, f"retailer {retailer!r} has no order {order_id!r}")
    return order


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, OrderStateError):
        return HTTPException(409, str(exc))
    if isinstance(exc, VersionMismatch):
        return HTTPException(412, str(exc))
    return HTTPException(422, str(exc))


def _changed(
    session: Session,
    response: Response,
    if_match: str | None,
    change: Callable[[Connection, int | None], Order | None],
) -> OrderPublic:
    """Apply a change to an order at the version If-Match names; commit; answer with its ETag."""
    try:
        order = change(session.connection(), _version(if_match))
    except (OrderStateError, VersionMismatch, OrderInputError) as exc:
        raise _http(exc) from None
    assert order is not None  # the route checked the order is the caller's
    session.commit()
    return _with_etag(order, response)


def _version(if_match: str | None) -> int | None:
    """Return the version an If-Match header names, None for none or ``*``; raise if unreadable."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise OrderInputError(f'If-Match must be an order\'s version as an ETag, e.g. "3", not {if_match!r}')
    return int(value)
