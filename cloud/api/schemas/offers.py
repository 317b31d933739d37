"""The API's models of offers and of retailers' campaigns."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cloud.api.schemas.common import CommaSeparated, Gtin, StoredTime, UtcTime
from shared.vocabulary import OfferAnswer, OfferKind, OfferStatus


class OfferPublic(BaseModel):
    """An offer made to the household: from whom, why, with which data, under which consent."""

    id: str
    retailer_id: str
    consent_id: str
    gtin: str
    name: str
    category: str | None
    kind: OfferKind
    reason: str
    data_categories: CommaSeparated
    created_at: StoredTime
    expires_at: StoredTime
    status: OfferStatus
    answered_at: StoredTime | None
    planned_order_id: str | None


class OfferAnswerIn(BaseModel):
    """The household's answer to an offer."""

    model_config = ConfigDict(extra="forbid")

    answer: OfferAnswer = Field(
        description="accepted: into the next order; not_this_category: no more offers of its category."
    )


class VariantIn(BaseModel):
    """One version of a campaign's offer."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    message: str = Field(min_length=1, max_length=200)
    discount_percent: float = Field(default=0, ge=0, le=90)


class CampaignIn(BaseModel):
    """A campaign: one product, up to four variants and a holdout that gets nothing."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    gtin: Gtin
    variants: list[VariantIn] = Field(min_length=1, max_length=4)
    starts_at: UtcTime
    ends_at: UtcTime
    budget: int = Field(ge=1, le=10_000_000, description="Most offers the campaign makes.")
    holdout_share: float = Field(default=0.1, ge=0.05, le=0.5)
    min_sample: int = Field(
        default=100, ge=20, le=1_000_000, description="Households per arm before a winner."
    )


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


class CampaignPublic(CampaignIn):
    """A campaign as stored."""

    # The table keeps the variants as JSON text, and times without their zone on SQLite.
    variants: Annotated[list[VariantIn], BeforeValidator(_json), Field(min_length=1, max_length=4)]
    starts_at: StoredTime
    ends_at: StoredTime
    id: str
    created_at: StoredTime
    stopped_at: StoredTime | None


class RatePublic(BaseModel):
    """A count, its rate and the rate's 95 % Wilson interval; null when withheld."""

    count: int | None
    rate: float | None
    low: float | None
    high: float | None


class ArmPublic(BaseModel):
    """One arm's aggregates; withheld (all null) under 20 households."""

    arm: str
    households: int | None
    offers: int | None
    accepted: RatePublic
    converted: RatePublic
    p_value: float | None = Field(description="Conversion against the holdout, two-proportion z-test.")
    withheld: bool


class CampaignResultsPublic(BaseModel):
    """A campaign's results: aggregates per arm, and a winner only when the evidence allows."""

    campaign_id: str
    arms: list[ArmPublic]
    winner: str | None
    verdict: str
