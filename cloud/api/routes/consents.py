"""The consent ledger's routes: a household grants, lists and withdraws its consents."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    INVALID_REQUEST,
    OWN,
    ClockDep,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas.consents import ConsentGrant, ConsentPublic, ConsentWithdrawal
from cloud.commerce import consents, withdrawal

__all__ = ["router"]

router = APIRouter(tags=["consent"])


@router.post(
    "/households/{household_id}/consents",
    dependencies=OWN,
    status_code=201,
    responses={**HOUSEHOLD_ERRORS, **BAD_BODY, **INVALID_REQUEST},
)
def grant_consent(
    household_id: str, body: ConsentGrant, session: SessionDep, clock: ClockDep
) -> ConsentPublic:
    """Grant a recipient a purpose (ordering, offers, analytics); it replaces an active grant of the
    same recipient and purpose."""
    household_or_404(session, household_id)
    connection = session.connection()
    try:
        consent_id = consents.grant(
            connection,
            household_id,
            body.recipient,
            body.purpose,
            clock.now(),
            channel=body.channel,
            data_categories=body.data_categories,
            text_version=body.text_version,
            expires_at=body.expires_at,
        )
    except consents.ConsentError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    (granted,) = [g for g in consents.ledger(session.connection(), household_id) if g.id == consent_id]
    return _public(granted, clock.now())


@router.post(
    "/households/{household_id}/consents/withdraw",
    dependencies=OWN,
    responses={**HOUSEHOLD_ERRORS, **BAD_BODY},
)
def withdraw_consent(
    household_id: str, body: ConsentWithdrawal, session: SessionDep, clock: ClockDep
) -> list[ConsentPublic]:
    """Withdraw the consent to a recipient for a purpose, at once; return the grants withdrawn
    (none if nothing was active)."""
    household_or_404(session, household_id)
    ids = withdrawal.withdraw_consent(
        session.connection(), household_id, body.recipient, body.purpose, clock.now()
    )
    session.commit()
    now = clock.now()
    return [_public(g, now) for g in consents.ledger(session.connection(), household_id) if g.id in ids]


@router.get("/households/{household_id}/consents", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
def list_consents(
    household_id: str,
    session: SessionDep,
    clock: ClockDep,
    active: Annotated[
        bool | None, Query(description="Only those that hold now (true) or not (false).")
    ] = None,
) -> list[ConsentPublic]:
    """Return the household's consent ledger, newest first."""
    household_or_404(session, household_id)
    now = clock.now()
    grants = [_public(g, now) for g in consents.ledger(session.connection(), household_id)]
    return [g for g in grants if active is None or g.active == active]


def _public(grant: consents.Grant, now: datetime) -> ConsentPublic:
    """Return a grant as the API shows it, with whether it holds ``now``."""
    return ConsentPublic.model_validate({**dataclasses.asdict(grant), "active": grant.active_at(now)})
