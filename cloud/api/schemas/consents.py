"""The API's models of the consent ledger and of an erasure."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.schemas.common import StoredTime, UtcTime
from shared.vocabulary import ConsentPurpose, DataCategory


class ConsentGrant(BaseModel):
    """A household's consent to a recipient for a purpose."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=1, max_length=64, description="A retailer's id.")
    purpose: ConsentPurpose
    data_categories: list[DataCategory] | None = Field(
        default=None, max_length=4, description="None: the purpose's usual data (cloud/commerce/consents.py)."
    )
    text_version: str | None = Field(default=None, max_length=40, description="None: the current text.")
    channel: Literal["api", "web"] = "api"
    expires_at: UtcTime | None = None


class ConsentWithdrawal(BaseModel):
    """Which consent to withdraw: the recipient and purpose."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=1, max_length=64)
    purpose: ConsentPurpose


class ConsentPublic(BaseModel):
    """One grant in the household's consent ledger."""

    id: str
    recipient: str
    purpose: ConsentPurpose
    data_categories: list[DataCategory]
    text_version: str
    channel: str
    granted_at: StoredTime
    withdrawn_at: StoredTime | None
    expires_at: StoredTime | None
    active: bool


class ErasurePublic(BaseModel):
    """An erasure begun: its record, and what is kept and why."""

    erasure_id: str
    household_hash: str = Field(description="SHA-256 of the household id: how the record names it.")
    kept: dict[str, str]
