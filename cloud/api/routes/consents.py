"""The consent ledger's routes: a household grants, lists and withdraws its consents."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Query

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    INVALID_REQUEST,
    OWN,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas import ConsentGrant, ConsentPublic, ConsentWithdrawal
from cloud.commerce import consents
from cloud.db.engine import as_utc
from shared.clock import Clock


def register(app: FastAPI, clock: Clock) -> None:
    """Add the consent routes to ``app``."""

    def public(grant: consents.Grant) -> ConsentPublic:
        return ConsentPublic(
            id=grant.id,
            recipient=grant.recipient,
            purpose=grant.purpose,
            data_categories=list(grant.data_categories),
            text_version=grant.text_version,
            channel=grant.channel,
            granted_at=as_utc(grant.granted_at),
            withdrawn_at=None if grant.withdrawn_at is None else as_utc(grant.withdrawn_at),
            expires_at=None if grant.expires_at is None else as_utc(grant.expires_at),
            active=grant.active_at(clock.now()),
        )

    @app.post(
        "/households/{household_id}/consents",
        tags=["consent"],
        dependencies=OWN,
        status_code=201,
        responses={**HOUSEHOLD_ERRORS, **BAD_BODY, **INVALID_REQUEST},
    )
    def grant_consent(household_id: str, body: ConsentGrant, session: SessionDep) -> ConsentPublic:
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
        return public(granted)

    @app.post(
        "/households/{household_id}/consents/withdraw",
        tags=["consent"],
        dependencies=OWN,
        responses={**HOUSEHOLD_ERRORS, **BAD_BODY},
    )
    def withdraw_consent(
        household_id: str, body: ConsentWithdrawal, session: SessionDep
    ) -> list[ConsentPublic]:
        """Withdraw the consent to a recipient for a purpose, at once; return the grants withdrawn
        (none if nothing was active)."""
        household_or_404(session, household_id)
        ids = consents.withdraw(session.connection(), household_id, body.recipient, body.purpose, clock.now())
        session.commit()
        return [public(g) for g in consents.ledger(session.connection(), household_id) if g.id in ids]

    @app.get(
        "/households/{household_id}/consents", tags=["consent"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
    )
    def list_consents(
        household_id: str,
        session: SessionDep,
        active: Annotated[
            bool | None, Query(description="Only those that hold now (true) or not (false).")
        ] = None,
    ) -> list[ConsentPublic]:
        """Return the household's consent ledger, newest first."""
        household_or_404(session, household_id)
        grants = [public(g) for g in consents.ledger(session.connection(), household_id)]
        return [g for g in grants if active is None or g.active == active]
