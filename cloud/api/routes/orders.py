"""The order API's routes: households' orders and retailer choice; retailers' slots, orders and
webhooks. The rules live in ``cloud/commerce/orders.py`` and ``cloud/outbox/deliveries.py``; this module turns
them into HTTP: 404 for what the caller has not got, 409 for a move the order's state forbids,
412 for a stale If-Match, 422 for a request that cannot make an order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Response
from pydantic import WithJsonSchema
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    INVALID_REQUEST,
    MAX_PAGE,
    OWN,
    RETAILER_ERRORS,
    Responses,
    RetailerDep,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas import (
    ErrorPublic,
    HouseholdRetailerPublic,
    HouseholdRetailerUpdate,
    InvalidRequestPublic,
    OrderCreate,
    OrderPublic,
    OrderStatus,
    RetailerOrderEvent,
    SlotPublic,
    SlotsUpload,
    SubstitutionDecision,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookSecretPublic,
)
from cloud.commerce import consents, orders
from cloud.db.engine import as_utc
from cloud.db.tables import DELIVERY_SLOTS, RETAILERS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from cloud.errors import OrderInputError, OrderStateError, VersionMismatch
from cloud.outbox import deliveries
from cloud.outbox.egress import EgressRefused, check_url
from cloud.outbox.signing import new_secret
from shared.clock import Clock

# While a secret is rotated, the old one still signs for this long, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)

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
NO_ENDPOINT: Responses = {
    **RETAILER_ERRORS,
    404: {"model": ErrorPublic, "description": "The retailer has no such webhook endpoint."},
}


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
    change: Callable[[Connection, int | None], OrderPublic | None],
) -> OrderPublic:
    """Apply a change to an order at the version If-Match names; commit; answer with its ETag."""
    try:
        order = change(session.connection(), orders.parse_if_match(if_match))
    except (OrderStateError, VersionMismatch, OrderInputError) as exc:
        raise _http(exc) from None
    assert order is not None  # the route checked the order is the caller's
    session.commit()
    return _with_etag(order, response)


def _with_etag(order: OrderPublic, response: Response) -> OrderPublic:
    response.headers["ETag"] = orders.etag(order.version)
    return order


def register(app: FastAPI, clock: Clock, *, allow_private_webhooks: bool) -> None:
    """Add the order API's routes to ``app``."""

    # -- households ----------------------------------------------------------------------------

    @app.put(
        "/households/{household_id}/retailer",
        tags=["orders"],
        dependencies=OWN,
        responses={**HOUSEHOLD_ERRORS, **BAD_BODY, **INVALID_REQUEST},
    )
    def set_retailer(
        household_id: str, update_: HouseholdRetailerUpdate, session: SessionDep
    ) -> HouseholdRetailerPublic:
        """Choose the retailer the household's orders go to, and its substitution policy."""
        household = household_or_404(session, household_id)
        if update_.retailer_id is not None:
            found = session.execute(
                select(RETAILERS.c.id).where(RETAILERS.c.id == update_.retailer_id)
            ).first()
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

    @app.get(
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

    @app.get(
        "/households/{household_id}/slots", tags=["orders"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
    )
    def household_slots(household_id: str, session: SessionDep) -> list[SlotPublic]:
        """Return the future delivery slots with room of the household's retailer."""
        household = household_or_404(session, household_id)
        if household.retailer_id is None:
            return []
        slots = DELIVERY_SLOTS.c
        rows = session.execute(
            select(DELIVERY_SLOTS)
            .where(
                slots.retailer_id == household.retailer_id,
                slots.starts_at > clock.now(),
                slots.booked < slots.capacity,
            )
            .order_by(slots.starts_at)
            .limit(200)
        ).all()
        return [orders.slot_public(row) for row in rows]

    @app.post(
        "/households/{household_id}/orders",
        tags=["orders"],
        dependencies=OWN,
        status_code=201,
        responses={**HOUSEHOLD_ORDER_ERRORS, **BAD_BODY},
    )
    def create_order(
        household_id: str, order: OrderCreate, session: SessionDep, response: Response
    ) -> OrderPublic:
        """Place an order with the household's retailer. Send an Idempotency-Key to retry safely."""
        household_or_404(session, household_id)
        connection = session.connection()
        try:
            order_id = orders.create_order(
                connection,
                household_id,
                [orders.Wanted(line.gtin, line.quantity) for line in order.lines],
                clock.now(),
                slot_id=order.slot_id,
            )
        except OrderInputError as exc:
            raise _http(exc) from None
        session.commit()
        placed = orders.view(session.connection(), order_id)
        assert placed is not None
        response.headers["Location"] = f"/households/{household_id}/orders/{order_id}"
        return _with_etag(placed, response)

    @app.get(
        "/households/{household_id}/orders", tags=["orders"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
    )
    def list_household_orders(
        household_id: str,
        session: SessionDep,
        status: OrderStatus | None = None,
        after: Annotated[str, Query(max_length=36, description="Return orders after this one.")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[OrderPublic]:
        """Return the household's orders, oldest first, a page at a time."""
        household_or_404(session, household_id)
        connection = session.connection()
        ids = orders.list_ids(connection, household_id=household_id, status=status, after=after, limit=limit)
        return [order for order_id in ids if (order := orders.view(connection, order_id)) is not None]

    def own_order(session: SessionDep, household_id: str, order_id: str) -> OrderPublic:
        household_or_404(session, household_id)
        order = orders.view(session.connection(), order_id)
        if order is None or order.household_id != household_id:
            raise HTTPException(404, f"household {household_id!r} has no order {order_id!r}")
        return order

    @app.get(
        "/households/{household_id}/orders/{order_id}",
        tags=["orders"],
        dependencies=OWN,
        responses=HOUSEHOLD_ERRORS,
    )
    def get_household_order(
        household_id: str, order_id: str, session: SessionDep, response: Response
    ) -> OrderPublic:
        """Return one of the household's orders; its ETag is its version."""
        return _with_etag(own_order(session, household_id, order_id), response)

    @app.post(
        "/households/{household_id}/orders/{order_id}/cancel",
        tags=["orders"],
        dependencies=OWN,
        responses=HOUSEHOLD_ORDER_ERRORS,
    )
    def cancel_household_order(
        household_id: str, order_id: str, session: SessionDep, response: Response, if_match: IfMatch = None
    ) -> OrderPublic:
        """Cancel an order before it is dispatched; 409 names the state if it is too late."""
        own_order(session, household_id, order_id)
        return _changed(
            session,
            response,
            if_match,
            lambda connection, version: orders.cancel(
                connection, household_id, order_id, clock.now(), if_match=version
            ),
        )

    @app.post(
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
        if_match: IfMatch = None,
    ) -> OrderPublic:
        """Approve or reject the substitutions the retailer proposed."""
        own_order(session, household_id, order_id)
        approve = decision.decision == "approve"
        return _changed(
            session,
            response,
            if_match,
            lambda connection, version: orders.decide_substitutions(
                connection, household_id, order_id, approve, clock.now(), if_match=version
            ),
        )

    # -- retailers: slots ------------------------------------------------------------------------

    @app.put(
        "/retailer/slots", tags=["retailer"], responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST}
    )
    def put_slots(upload: SlotsUpload, retailer: RetailerDep, session: SessionDep) -> list[SlotPublic]:
        """Publish delivery slots, keyed by their start; a capacity below a slot's bookings keeps them
        booked and takes no more."""
        connection = session.connection()
        for slot in upload.slots:
            if slot.ends_at <= slot.starts_at:
                raise HTTPException(
                    422, f"the slot starting {slot.starts_at.isoformat()} must end after it starts"
                )
        insert_ = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        slots = DELIVERY_SLOTS.c
        for slot in upload.slots:
            statement = insert_(DELIVERY_SLOTS).values(
                id=str(uuid.uuid4()),
                retailer_id=retailer,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                capacity=slot.capacity,
                booked=0,
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["retailer_id", "starts_at"],
                    set_={
                        "ends_at": statement.excluded.ends_at,
                        # As asked, even below the bookings: those stay booked, no more are taken.
                        "capacity": statement.excluded.capacity,
                    },
                )
            )
        session.commit()
        starts = [slot.starts_at for slot in upload.slots]
        rows = session.execute(
            select(DELIVERY_SLOTS)
            .where(slots.retailer_id == retailer, slots.starts_at.in_(starts))
            .order_by(slots.starts_at)
        ).all()
        return [orders.slot_public(row) for row in rows]

    @app.get("/retailer/slots", tags=["retailer"], responses=RETAILER_ERRORS)
    def get_slots(
        retailer: RetailerDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200
    ) -> list[SlotPublic]:
        """Return the retailer's future slots and their bookings, soonest first."""
        slots = DELIVERY_SLOTS.c
        rows = session.execute(
            select(DELIVERY_SLOTS)
            .where(slots.retailer_id == retailer, slots.ends_at > clock.now())
            .order_by(slots.starts_at)
            .limit(limit)
        ).all()
        return [orders.slot_public(row) for row in rows]

    # -- retailers: orders -----------------------------------------------------------------------

    @app.get("/retailer/orders", tags=["retailer"], responses=RETAILER_ERRORS)
    def list_retailer_orders(
        retailer: RetailerDep,
        session: SessionDep,
        status: OrderStatus | None = None,
        after: Annotated[str, Query(max_length=36, description="Return orders after this one.")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[OrderPublic]:
        """Return the retailer's orders, oldest first, optionally of one status."""
        connection = session.connection()
        ids = orders.list_ids(connection, retailer_id=retailer, status=status, after=after, limit=limit)
        return [order for order_id in ids if (order := orders.view(connection, order_id)) is not None]

    def retailer_order(session: SessionDep, retailer: str, order_id: str) -> OrderPublic:
        order = orders.view(session.connection(), order_id)
        if order is None or order.retailer_id != retailer:
            raise HTTPException(404, f"retailer {retailer!r} has no order {order_id!r}")
        return order

    @app.get("/retailer/orders/{order_id}", tags=["retailer"], responses=RETAILER_ORDER_ERRORS)
    def get_retailer_order(
        order_id: str, retailer: RetailerDep, session: SessionDep, response: Response
    ) -> OrderPublic:
        """Return one of the retailer's orders; its ETag is its version."""
        return _with_etag(retailer_order(session, retailer, order_id), response)

    @app.post(
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
        if_match: IfMatch = None,
    ) -> OrderPublic:
        """Report an order's progress: accepted, rejected, picking, substitution_proposed,
        dispatched, delivered or cancelled; 409 names the state if the move is not allowed."""
        retailer_order(session, retailer, order_id)
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
                substitutions=event.substitutions,
                delivered=event.delivered,
            ),
        )

    # -- retailers: webhooks ---------------------------------------------------------------------

    @app.post(
        "/retailer/webhooks",
        tags=["retailer"],
        status_code=201,
        responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST},
    )
    def create_webhook(
        endpoint: WebhookEndpointCreate, retailer: RetailerDep, session: SessionDep
    ) -> WebhookSecretPublic:
        """Register a URL for the retailer's webhooks; the answer holds its signing secret, once."""
        try:
            check_url(endpoint.url, allow_private=allow_private_webhooks)
        except EgressRefused as exc:
            raise HTTPException(422, str(exc)) from None
        except ValueError:  # urlsplit or the IDNA codec refuses it: a stray "[", an empty or long label
            raise HTTPException(422, f"{endpoint.url!r} is not a URL with a valid host") from None
        endpoint_id, secret, now = str(uuid.uuid4()), new_secret(), clock.now()
        session.execute(
            WEBHOOK_ENDPOINTS.insert().values(
                id=endpoint_id, retailer_id=retailer, url=endpoint.url, secret=secret, created_at=now
            )
        )
        session.commit()
        return WebhookSecretPublic(**_endpoint(session, retailer, endpoint_id).model_dump(), secret=secret)

    @app.get("/retailer/webhooks", tags=["retailer"], responses=RETAILER_ERRORS)
    def list_webhooks(retailer: RetailerDep, session: SessionDep) -> list[WebhookEndpointPublic]:
        """Return the retailer's webhook endpoints."""
        ids = session.execute(
            select(WEBHOOK_ENDPOINTS.c.id)
            .where(WEBHOOK_ENDPOINTS.c.retailer_id == retailer)
            .order_by(WEBHOOK_ENDPOINTS.c.created_at)
        ).scalars()
        return [_endpoint(session, retailer, str(endpoint_id)) for endpoint_id in ids]

    @app.post("/retailer/webhooks/{endpoint_id}/rotate", tags=["retailer"], responses=NO_ENDPOINT)
    def rotate_secret(endpoint_id: str, retailer: RetailerDep, session: SessionDep) -> WebhookSecretPublic:
        """Give the endpoint a new secret; for 24 hours messages are signed with both."""
        current = _endpoint_row(session, retailer, endpoint_id)
        secret, now = new_secret(), clock.now()
        session.execute(
            update(WEBHOOK_ENDPOINTS)
            .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
            .values(secret=secret, previous_secret=current.secret, previous_until=now + ROTATION_OVERLAP)
        )
        session.commit()
        return WebhookSecretPublic(**_endpoint(session, retailer, endpoint_id).model_dump(), secret=secret)

    @app.post("/retailer/webhooks/{endpoint_id}/enable", tags=["retailer"], responses=NO_ENDPOINT)
    def enable_webhook(endpoint_id: str, retailer: RetailerDep, session: SessionDep) -> WebhookEndpointPublic:
        """Enable the endpoint again (after a 410, say) and send what failed once more."""
        _endpoint_row(session, retailer, endpoint_id)
        session.execute(
            update(WEBHOOK_ENDPOINTS)
            .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
            .values(disabled_at=None, disabled_reason=None)
        )
        deliveries.retry_now(session.connection(), endpoint_id, clock.now())
        session.commit()
        return _endpoint(session, retailer, endpoint_id)

    @app.delete("/retailer/webhooks/{endpoint_id}", tags=["retailer"], responses=NO_ENDPOINT)
    def disable_webhook(
        endpoint_id: str, retailer: RetailerDep, session: SessionDep
    ) -> WebhookEndpointPublic:
        """Disable the endpoint: nothing more is sent to it."""
        _endpoint_row(session, retailer, endpoint_id)
        session.execute(
            update(WEBHOOK_ENDPOINTS)
            .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
            .values(disabled_at=clock.now(), disabled_reason="disabled by the retailer")
        )
        session.commit()
        return _endpoint(session, retailer, endpoint_id)

    @app.get("/retailer/webhooks/{endpoint_id}/deliveries", tags=["retailer"], responses=NO_ENDPOINT)
    def list_deliveries(
        endpoint_id: str,
        retailer: RetailerDep,
        session: SessionDep,
        status: deliveries.DeliveryStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[WebhookDeliveryPublic]:
        """Return the endpoint's delivery log, newest first: each message, its attempts and outcome."""
        _endpoint_row(session, retailer, endpoint_id)
        table = WEBHOOK_DELIVERIES.c
        query = select(WEBHOOK_DELIVERIES).where(table.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(table.status == status)
        rows = session.execute(query.order_by(table.created_at.desc(), table.id).limit(limit)).all()
        return [
            WebhookDeliveryPublic(
                id=row.id,
                event_type=row.event_type,
                status=row.status,
                attempts=row.attempts,
                next_attempt_at=None if row.next_attempt_at is None else as_utc(row.next_attempt_at),
                last_status_code=row.last_status_code,
                last_error=row.last_error,
                created_at=as_utc(row.created_at),
                delivered_at=None if row.delivered_at is None else as_utc(row.delivered_at),
                payload=row.payload,
            )
            for row in rows
        ]

    def _endpoint_row(session: SessionDep, retailer: str, endpoint_id: str) -> Any:
        row = session.execute(
            select(WEBHOOK_ENDPOINTS).where(
                WEBHOOK_ENDPOINTS.c.id == endpoint_id, WEBHOOK_ENDPOINTS.c.retailer_id == retailer
            )
        ).first()
        if row is None:
            raise HTTPException(404, f"retailer {retailer!r} has no webhook endpoint {endpoint_id!r}")
        return row

    def _endpoint(session: SessionDep, retailer: str, endpoint_id: str) -> WebhookEndpointPublic:
        row = _endpoint_row(session, retailer, endpoint_id)
        until = None if row.previous_until is None else as_utc(row.previous_until)
        return WebhookEndpointPublic(
            id=row.id,
            url=row.url,
            created_at=as_utc(row.created_at),
            disabled_at=None if row.disabled_at is None else as_utc(row.disabled_at),
            disabled_reason=row.disabled_reason,
            previous_secret_valid_until=until if until is not None and until > clock.now() else None,
        )
