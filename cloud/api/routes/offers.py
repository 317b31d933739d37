"""The offers' routes: a household lists the offers it got, with their reasons, and answers them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from sqlalchemy import select

from cloud.api.dependencies import BAD_BODY, HOUSEHOLD_ERRORS, MAX_PAGE, OWN, SessionDep, household_or_404
from cloud.api.schemas import ErrorPublic, OfferAnswerIn, OfferPublic
from cloud.commerce import offers
from cloud.db.engine import as_utc
from cloud.db.tables import OFFERS
from shared.clock import Clock


def offer_public(row: Any) -> OfferPublic:
    """Return an offer's row as the API shows it."""
    return OfferPublic(
        id=row.id,
        retailer_id=row.retailer_id,
        consent_id=row.consent_id,
        gtin=row.gtin,
        name=row.name,
        category=row.category,
        kind=row.kind,
        reason=row.reason,
        data_categories=[c for c in row.data_categories.split(",") if c],
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        status=row.status,
        answered_at=None if row.answered_at is None else as_utc(row.answered_at),
        planned_order_id=row.planned_order_id,
    )


def register(app: FastAPI, clock: Clock) -> None:
    """Add the offers' routes to ``app``."""

    @app.get(
        "/households/{household_id}/offers", tags=["offers"], dependencies=OWN, responses=HOUSEHOLD_ERRORS
    )
    def list_offers(
        household_id: str,
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> list[OfferPublic]:
        """Return the offers the household got, newest first, each with its reason, the data it used
        and the consent that allowed it."""
        household_or_404(session, household_id)
        rows = session.execute(
            select(OFFERS)
            .where(OFFERS.c.household_id == household_id)
            .order_by(OFFERS.c.created_at.desc(), OFFERS.c.id)
            .limit(limit)
        ).all()
        return [offer_public(row) for row in rows]

    @app.post(
        "/households/{household_id}/offers/{offer_id}/answer",
        tags=["offers"],
        dependencies=OWN,
        responses={
            **HOUSEHOLD_ERRORS,
            **BAD_BODY,
            409: {"model": ErrorPublic, "description": "The offer was answered already."},
        },
    )
    def answer_offer(
        household_id: str, offer_id: str, body: OfferAnswerIn, session: SessionDep
    ) -> OfferPublic:
        """Accept an offer (it goes into the next order), dismiss it, or turn its category off."""
        household_or_404(session, household_id)
        try:
            offers.answer(session.connection(), household_id, offer_id, body.answer, clock.now())
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except offers.OfferError as exc:
            raise HTTPException(409, str(exc)) from None
        session.commit()
        row = session.execute(select(OFFERS).where(OFFERS.c.id == offer_id)).one()
        return offer_public(row)
