"""Campaign routes for retailers: create, list, stop, and read results (aggregates only)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import select

from cloud.api.dependencies import (
    BAD_BODY,
    INVALID_REQUEST,
    RETAILER_ERRORS,
    Responses,
    RetailerDep,
    SessionDep,
)
from cloud.api.schemas import CampaignIn, CampaignPublic, CampaignResultsPublic, ErrorPublic, VariantIn
from cloud.commerce import campaigns
from cloud.db.engine import as_utc
from cloud.db.tables import CAMPAIGNS
from shared.clock import Clock

NO_CAMPAIGN: Responses = {
    **RETAILER_ERRORS,
    404: {"model": ErrorPublic, "description": "The retailer has no such campaign."},
}


def campaign_public(row: Any) -> CampaignPublic:
    """Return a campaign's row as the API shows it."""
    return CampaignPublic(
        id=row.id,
        name=row.name,
        gtin=row.gtin,
        variants=[VariantIn(**v) for v in json.loads(row.variants)],
        starts_at=as_utc(row.starts_at),
        ends_at=as_utc(row.ends_at),
        budget=row.budget,
        holdout_share=row.holdout_share,
        min_sample=row.min_sample,
        created_at=as_utc(row.created_at),
        stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at),
    )


def register(app: FastAPI, clock: Clock) -> None:
    """Add the campaign routes to ``app``."""

    @app.post(
        "/retailer/campaigns",
        tags=["campaigns"],
        status_code=201,
        responses={**RETAILER_ERRORS, **BAD_BODY, **INVALID_REQUEST},
    )
    def create_campaign(body: CampaignIn, retailer: RetailerDep, session: SessionDep) -> CampaignPublic:
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

    @app.get("/retailer/campaigns", tags=["campaigns"], responses=RETAILER_ERRORS)
    def list_campaigns(retailer: RetailerDep, session: SessionDep) -> list[CampaignPublic]:
        """Return your campaigns, newest first."""
        rows = session.execute(
            select(CAMPAIGNS)
            .where(CAMPAIGNS.c.retailer_id == retailer)
            .order_by(CAMPAIGNS.c.created_at.desc())
        ).all()
        return [campaign_public(row) for row in rows]

    @app.post("/retailer/campaigns/{campaign_id}/stop", tags=["campaigns"], responses=NO_CAMPAIGN)
    def stop_campaign(campaign_id: str, retailer: RetailerDep, session: SessionDep) -> CampaignPublic:
        """Stop a campaign: no more of its offers."""
        if not campaigns.stop(session.connection(), retailer, campaign_id, clock.now()):
            raise HTTPException(404, f"retailer {retailer!r} has no campaign {campaign_id!r}")
        session.commit()
        return campaign_public(session.execute(select(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id)).one())

    @app.get("/retailer/campaigns/{campaign_id}/results", tags=["campaigns"], responses=NO_CAMPAIGN)
    def campaign_results(
        campaign_id: str, retailer: RetailerDep, session: SessionDep
    ) -> CampaignResultsPublic:
        """Return the campaign's results per arm with 95 % intervals; any arm of fewer than 20
        households is withheld, and no winner is named before every arm has min_sample."""
        found = campaigns.results(session.connection(), retailer, campaign_id)
        if found is None:
            raise HTTPException(404, f"retailer {retailer!r} has no campaign {campaign_id!r}")
        return CampaignResultsPublic.model_validate(dataclasses.asdict(found))
