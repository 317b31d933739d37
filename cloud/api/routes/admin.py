"""Operators' routes for credentials: list and revoke households' and operators' tokens and
retailers' API keys. Listings show a credential's prefix, never the secret or its hash; a revocation
takes effect at the next request, and ends the web sign-ins made with the credential. Issuing stays
on the command line (`frigo tokens`, `frigo retailers`), where the secret is shown once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from cloud.api.dependencies import (
    MAX_ID,
    OPERATOR_ERRORS,
    ClockDep,
    HolderDep,
    Responses,
    SessionDep,
    admin_only,
)
from cloud.api.schemas.admin import CredentialState, RetailerKeyPublic, TokenPublic
from cloud.api.schemas.common import ErrorPublic
from cloud.identity.retailers import KeyInfo, list_keys, revoke_key
from cloud.identity.tokens import TokenInfo, list_tokens, revoke_token

__all__ = ["router"]

router = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(admin_only)], responses=OPERATOR_ERRORS
)

NOT_FOUND: Responses = {404: {"model": ErrorPublic, "description": "No such token, retailer or key."}}
OWN_TOKEN: Responses = {
    409: {"model": ErrorPublic, "description": "The token this request came with: revoke it otherwise."}
}
CredentialId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _token_public(token: TokenInfo, now: datetime) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        role=token.role,
        household_id=token.household_id,
        prefix=token.prefix,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        state=token.state(now),
    )


def _key_public(key: KeyInfo, now: datetime) -> RetailerKeyPublic:
    return RetailerKeyPublic(
        id=key.id,
        retailer_id=key.retailer_id,
        prefix=key.prefix,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        state=key.state(now),
    )


@router.get("/tokens")
def get_tokens(
    session: SessionDep,
    clock: ClockDep,
    household_id: Annotated[str | None, Query(max_length=80, description="This household's only.")] = None,
    state: Annotated[CredentialState | None, Query(description="Those in this state only.")] = None,
) -> list[TokenPublic]:
    """Return the households' and operators' tokens, oldest first, by prefix."""
    now = clock.now()
    found = [_token_public(t, now) for t in list_tokens(session.connection(), household_id)]
    return [t for t in found if state is None or t.state == state]


@router.post("/tokens/{token_id}/revoke", responses={**NOT_FOUND, **OWN_TOKEN})
def post_token_revoke(
    token_id: CredentialId, session: SessionDep, clock: ClockDep, who: HolderDep
) -> TokenPublic:
    """Revoke a token at once: its next request gets 401, its web sign-ins end. Revoking it again
    changes nothing."""
    if who.token_id == token_id:
        # An operator's last token revoked by mistake would lock the API out; the command line can.
        raise HTTPException(
            409,
            f"token {token_id} is the one this request came with: revoke it with another operator's "
            f"token, or with `frigo tokens revoke {token_id}`",
        )
    now = clock.now()
    revoked = revoke_token(session.connection(), token_id, now)
    if revoked is None:
        raise HTTPException(404, f"no token {token_id}; GET /admin/tokens lists them")
    session.commit()
    return _token_public(revoked, now)


@router.get("/retailers/{retailer_id}/keys", responses=NOT_FOUND)
def get_retailer_keys(
    retailer_id: Annotated[str, Path(max_length=64)], session: SessionDep, clock: ClockDep
) -> list[RetailerKeyPublic]:
    """Return the retailer's API keys, oldest first, by prefix."""
    keys = list_keys(session.connection(), retailer_id)
    if keys is None:
        raise HTTPException(404, f"no retailer {retailer_id!r}; `frigo retailers list` shows them")
    now = clock.now()
    return [_key_public(k, now) for k in keys]


@router.post("/retailers/{retailer_id}/keys/{key_id}/revoke", responses=NOT_FOUND)
def post_retailer_key_revoke(
    retailer_id: Annotated[str, Path(max_length=64)],
    key_id: CredentialId,
    session: SessionDep,
    clock: ClockDep,
) -> RetailerKeyPublic:
    """Revoke a retailer's key at once: its next request gets 401, its web sign-ins and live streams
    end. Revoking it again changes nothing."""
    now = clock.now()
    revoked = revoke_key(session.connection(), retailer_id, key_id, now)
    if revoked is None:
        raise HTTPException(
            404, f"retailer {retailer_id!r} has no key {key_id}; GET /admin/retailers/{{id}}/keys lists them"
        )
    session.commit()
    return _key_public(revoked, now)
