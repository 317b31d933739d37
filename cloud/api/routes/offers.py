"""The offers' routes: a household lists the offers it got, with their reasons, and answers them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from cloud.api.dependencies import (
    BAD_BODY,
    HOUSEHOLD_ERRORS,
    MAX_PAGE,
    OWN,
    ClockDep,
    SessionDep,
    household_or_404,
)
from cloud.api.schemas.common import ErrorPublic
from cloud.api.schemas.offers import OfferAnswerIn, OfferPublic
from cloud.commerce import offers
from cloud.db.tables import OFFERS

__all__ = ["router"]

router = APIRouter(tags=["offers"])


@router.get("/households/{household_id}/offers", dependencies=OWN, responses=HOUSEHOLD_ERRORS)
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
    return [OfferPublic.model_validate(row, from_attributes=True) for row in rows]


@router.post(
    "/households/{household_id}/offers/{offer_id}/answer",
    dependencies=OWN,
    responses={
        **HOUSEHOLD_ERRORS,
        **BAD_BODY,
        409: {"model": ErrorPublic, "description": "The offer was answered already."},
    },
)
def answer_offer(
    household_id: str, offer_id: str, body: OfferAnswerIn, session: SessionDep, clock: ClockDep
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
    return OfferPublic.model_validate(row, from_attributes=True)
