"""A retailer's webhook endpoints: registered, listed, rotated, enabled and disabled, with each
endpoint's delivery log. Sending is ``cloud/outbox/deliveries.py``'s."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import select, update
from sqlmodel import Session

from cloud.api.dependencies import (
    BAD_BODY,
    INVALID_REQUEST,
    MAX_PAGE,
    RETAILER_ERRORS,
    ClockDep,
    Responses,
    RetailerDep,
    SessionDep,
)
from cloud.api.schemas.common import ErrorPublic
from cloud.api.schemas.retail import (
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookSecretPublic,
)
from cloud.db.engine import as_utc
from cloud.db.tables import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from cloud.outbox import deliveries
from cloud.outbox.egress import EgressRefused, check_url
from cloud.outbox.signing import new_secret

__all__ = ["router"]

router = APIRouter(tags=["retailer"])

# While a secret is rotated, the old one still signs for this long, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)
NO_ENDPOINT: Responses = {
    **RETAILER_ERRORS,
    404: {"model": ErrorPublic, "description": "The retailer has no such webhook endpoint."},
}


def _allow_private(request: Request) -> bool:
    """Return whether endpoints may be on private addresses (tests and closed installs only)."""
    return bool(request.app.state.allow_private_webhooks)


AllowPrivateDep = Annotated[bool, Depends(_allow_private)]


@router.post(
    "/retailer/webhooks", status_code=201, responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST}
)
def create_webhook(
    endpoint: WebhookEndpointCreate,
    retailer: RetailerDep,
    session: SessionDep,
    clock: ClockDep,
    allow_private: AllowPrivateDep,
) -> WebhookSecretPublic:
    """Register a URL for the retailer's webhooks; the answer holds its signing secret, once."""
    try:
        check_url(endpoint.url, allow_private=allow_private)
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
    return _with_secret(_endpoint_row(session, retailer, endpoint_id), secret, now)


@router.get("/retailer/webhooks", responses=RETAILER_ERRORS)
def list_webhooks(retailer: RetailerDep, session: SessionDep, clock: ClockDep) -> list[WebhookEndpointPublic]:
    """Return the retailer's webhook endpoints."""
    rows = session.execute(
        select(WEBHOOK_ENDPOINTS)
        .where(WEBHOOK_ENDPOINTS.c.retailer_id == retailer)
        .order_by(WEBHOOK_ENDPOINTS.c.created_at)
    ).all()
    return [_public(row, clock.now()) for row in rows]


@router.post("/retailer/webhooks/{endpoint_id}/rotate", responses=NO_ENDPOINT)
def rotate_secret(
    endpoint_id: str, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> WebhookSecretPublic:
    """Give the endpoint a new secret; for 24 hours messages are signed with both."""
    current = _endpoint_row(session, retailer, endpoint_id)
    secret, now = new_secret(), clock.now()
    session.execute(
        update(WEBHOOK_ENDPOINTS)
        .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
        .values(secret=secret, previous_secret=current.secret, previous_until=now + ROTATION_OVERLAP)
    )
    session.commit()
    return _with_secret(_endpoint_row(session, retailer, endpoint_id), secret, now)


@router.post("/retailer/webhooks/{endpoint_id}/enable", responses=NO_ENDPOINT)
def enable_webhook(
    endpoint_id: str, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> WebhookEndpointPublic:
    """Enable the endpoint again (after a 410, say) and send what failed once more."""
    _endpoint_row(session, retailer, endpoint_id)
    session.execute(
        update(WEBHOOK_ENDPOINTS)
        .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
        .values(disabled_at=None, disabled_reason=None)
    )
    deliveries.retry_now(session.connection(), endpoint_id, clock.now())
    session.commit()
    return _public(_endpoint_row(session, retailer, endpoint_id), clock.now())


@router.delete("/retailer/webhooks/{endpoint_id}", responses=NO_ENDPOINT)
def disable_webhook(
    endpoint_id: str, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> WebhookEndpointPublic:
    """Disable the endpoint: nothing more is sent to it."""
    _endpoint_row(session, retailer, endpoint_id)
    session.execute(
        update(WEBHOOK_ENDPOINTS)
        .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
        .values(disabled_at=clock.now(), disabled_reason="disabled by the retailer")
    )
    session.commit()
    return _public(_endpoint_row(session, retailer, endpoint_id), clock.now())


@router.get("/retailer/webhooks/{endpoint_id}/deliveries", responses=NO_ENDPOINT)
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
    return [WebhookDeliveryPublic.model_validate(row, from_attributes=True) for row in rows]


def _endpoint_row(session: Session, retailer: str, endpoint_id: str) -> Any:
    row = session.execute(
        select(WEBHOOK_ENDPOINTS).where(
            WEBHOOK_ENDPOINTS.c.id == endpoint_id, WEBHOOK_ENDPOINTS.c.retailer_id == retailer
        )
    ).first()
    if row is None:
        raise HTTPException(404, f"retailer {retailer!r} has no webhook endpoint {endpoint_id!r}")
    return row


def _public(row: Any, now: datetime) -> WebhookEndpointPublic:
    """Return an endpoint's row as the API shows it: the old secret's overlap only while it lasts."""
    until = None if row.previous_until is None else as_utc(row.previous_until)
    return WebhookEndpointPublic(
        id=row.id,
        url=row.url,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        previous_secret_valid_until=until if until is not None and until > as_utc(now) else None,
    )


def _with_secret(row: Any, secret: str, now: datetime) -> WebhookSecretPublic:
    return WebhookSecretPublic(**_public(row, now).model_dump(), secret=secret)
