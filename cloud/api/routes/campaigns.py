"""Campaign routes for retailers: create, list, stop, and read results (aggregates only)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from cloud.api.dependencies import (
    BAD_BODY,
    INVALID_REQUEST,
    RETAILER_ERRORS,
    ClockDep,
    Responses,
    RetailerDep,
    SessionDep,
)
from cloud.api.schemas.common import ErrorPublic
from cloud.api.schemas.offers import CampaignIn, CampaignPublic, CampaignResultsPublic
from cloud.commerce import campaigns
from cloud.db.tables import CAMPAIGNS

NO_CAMPAIGN: Responses = {
    **RETAILER_ERRORS,
    404: {"model": ErrorPublic, "description": "The retailer has no such campaign."},
}

__all__ = ["campaign_public", "router"]

router = APIRouter(tags=["campaigns"])


def campaign_public(row: Any) -> CampaignPublic:
    """Return a campaign's row as the API shows it."""
    return CampaignPublic.model_validate(row, from_attributes=True)


@router.post(
    "/retailer/campaigns",
    status_code=201,
    responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST},
)
def create_campaign(
    body: CampaignIn, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    """Start a campaign for one of your products: its variants go to households that allow your
    offers, one arm each, a holdout gets none."""
    try:
        campaign_id = campaigns.create(
            session.connection(),
            retailer,
            body.name,
            body.gtin,
            [campaigns.Variant(v.name, v.message, v.discount_percent) for v in body.variants],
            body.starts_at,
            body.ends_at,
            budget=body.budget,
            holdout_share=body.holdout_share,
            min_sample=body.min_sample,
            now=clock.now(),
        )
    except campaigns.CampaignError as exc:
        raise HTTPException(422, str(exc)) from None
    session.commit()
    return campaign_public(session.execute(select(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id)).one())


@router.get("/retailer/campaigns", responses=RETAILER_ERRORS)
def list_campaigns(retailer: RetailerDep, session: SessionDep) -> list[CampaignPublic]:
    """Return your campaigns, newest first."""
    rows = session.execute(
        select(CAMPAIGNS).where(CAMPAIGNS.c.retailer_id == retailer).order_by(CAMPAIGNS.c.created_at.desc())
    ).all()
    return [campaign_public(row) for row in rows]


@router.post("/retailer/campaigns/{campaign_id}/stop", responses=NO_CAMPAIGN)
def stop_campaign(
    campaign_id: str, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> CampaignPublic:
    """Stop a campaign: no more of its offers."""
    if not campaigns.stop(session.connection(), retailer, campaign_id, clock.now()):
        raise HTTPException(404, f"retailer {retailer!r} has no campaign {campaign_id!r}")
    session.commit()
    return campaign_public(session.execute(select(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id)).one())


@router.get("/retailer/campaigns/{campaign_id}/results", responses=NO_CAMPAIGN)
def campaign_results(
    campaign_id: str, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> CampaignResultsPublic:
    """Return the campaign's results per arm with 95 % intervals; any arm of fewer than 20
    households is withheld, conversion counts only the households whose analytics consent to you
    holds, and no winner is named before every arm has min_sample of those."""
    found = campaigns.results(session.connection(), retailer, campaign_id, clock.now())
    if found is None:
        raise HTTPException(404, f"retailer {retailer!r} has no campaign {campaign_id!r}")
    return CampaignResultsPublic.model_validate(dataclasses.asdict(found))
