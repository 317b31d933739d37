"""The API's models of credentials, for operators: tokens and retailers' keys, by their prefix only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cloud.api.schemas.common import StoredTime

CredentialState = Literal["live", "expired", "revoked"]


class TokenPublic(BaseModel):
    """A household's or an operator's token: never the token or its hash, only its first characters."""

    id: int
    role: Literal["household", "admin"]
    household_id: str | None = Field(description="The household it opens; null for an operator's.")
    prefix: str = Field(description="The token's first characters, to tell it apart from the others.")
    created_at: StoredTime
    expires_at: StoredTime
    revoked_at: StoredTime | None
    state: CredentialState = Field(description="live, expired or revoked, now.")


class RetailerKeyPublic(BaseModel):
    """A retailer's API key: never the key or its hash, only its first characters."""

    id: int
    retailer_id: str
    prefix: str = Field(description="The key's first characters, to tell it apart from the others.")
    created_at: StoredTime
    expires_at: StoredTime
    revoked_at: StoredTime | None
    state: CredentialState = Field(description="live, expired or revoked, now.")
