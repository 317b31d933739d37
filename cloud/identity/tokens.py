"""Who is calling: households' and operators' bearer tokens, and what each may see.

A household token (``frh_…``) opens its own household's routes and nothing else; an admin token
(``fra_…``) opens every household's and the operators' routes. Tokens are shown once and stored as
their SHA-256 (a token has far more entropy than a password). Every token expires
(:data:`LIFETIMES`, or the lifetime asked for when it is made) and can be revoked
(:func:`revoke_token`: `frigo tokens revoke`, ``POST /admin/tokens/{id}/revoke``); a revoked or
expired token opens nothing, and the web sign-ins made with it end with it
(:mod:`cloud.identity.sessions`). Listings show a token's first characters (its prefix), never the
token or its hash. Retailers have keys of their own (:mod:`cloud.identity.retailers`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select, update
from sqlmodel import Session

from cloud.db.engine import as_utc
from cloud.db.tables import ACCESS_TOKENS, AccessToken, Household
from cloud.errors import CloudError

Role = Literal["household", "admin"]
# What a token or a retailer key is at a given moment.
State = Literal["live", "expired", "revoked"]
PREFIXES: dict[Role, str] = {"household": "frh_", "admin": "fra_"}
TOKEN_BYTES = 32
SHOWN = 12
# How long a token lives unless its maker says otherwise: an operator's a quarter (it opens every
# household), a household's a year (it sits in the household's phone and scripts).
LIFETIMES: dict[Role, timedelta] = {"admin": timedelta(days=90), "household": timedelta(days=365)}


class AccessError(CloudError, ValueError):
    """A token that cannot be issued; the message says why."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The bearer of a valid token."""

    role: Role
    household_id: str | None

    def may_see(self, household_id: str) -> bool:
        """Return whether this caller may read and act on the household."""
        return self.role == "admin" or self.household_id == household_id


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as an operator sees it: its first characters, never the token or its hash."""

    id: int
    role: Role
    household_id: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def state(self, now: datetime) -> State:
        """Return whether the token is live, expired or revoked at ``now``."""
        return state_at(self.expires_at, self.revoked_at, now)


def state_at(expires_at: datetime, revoked_at: datetime | None, now: datetime) -> State:
    """Return the state of a credential (a token or a retailer key) that ends at ``expires_at``."""
    if revoked_at is not None:
        return "revoked"
    return "live" if as_utc(expires_at) > now else "expired"


def token_hash(token: str) -> str:
    """Return the stored form of a bearer secret (a household's, an operator's or a retailer's)."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session,
    role: Role,
    household_id: str | None,
    now: datetime,
    *,
    lifetime: timedelta | None = None,
) -> str:
    """Issue a token that lives ``lifetime`` (the role's default in :data:`LIFETIMES`) and return it
    (it is not stored, only its hash)."""
    lifetime = LIFETIMES[role] if lifetime is None else lifetime
    if lifetime <= timedelta(0):
        raise AccessError("a token's lifetime must be positive")
    if role == "household":
        if household_id is None or session.get(Household, household_id) is None:
            raise AccessError(f"no household {household_id!r}: GET /households lists them")
    elif household_id is not None:
        raise AccessError("an admin token is for every household: give no household")
    token = PREFIXES[role] + secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        AccessToken(
            role=role,
            household_id=household_id,
            prefix=token[:SHOWN],
            token_hash=token_hash(token),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def token_of(connection: Connection, token: str, now: datetime) -> tuple[int, Caller] | None:
    """Return the id of ``token``'s row and who holds it, or None if it is no live token at ``now``
    (unknown, revoked or expired)."""
    if not token.startswith(tuple(PREFIXES.values())):
        return None
    tokens = ACCESS_TOKENS.c
    row = connection.execute(
        select(tokens.id, tokens.role, tokens.household_id).where(
            tokens.token_hash == token_hash(token), tokens.revoked_at.is_(None), tokens.expires_at > now
        )
    ).first()
    return None if row is None else (int(row[0]), caller_from(str(row[1]), row[2]))


def caller_from(role: str, household_id: str | None) -> Caller:
    """Return the caller a token's stored role and household stand for."""
    household = None if household_id is None else str(household_id)
    return Caller("admin" if role == "admin" else "household", household)


def caller_of(connection: Connection, token: str, now: datetime) -> Caller | None:
    """Return who holds ``token``, or None if it is no live token at ``now`` (revoked or expired)."""
    found = token_of(connection, token, now)
    return None if found is None else found[1]


def list_tokens(connection: Connection, household_id: str | None = None) -> list[TokenInfo]:
    """Return every token (or the household's), live or not, oldest first."""
    query = select(ACCESS_TOKENS).order_by(ACCESS_TOKENS.c.id)
    if household_id is not None:
        query = query.where(ACCESS_TOKENS.c.household_id == household_id)
    return [_info(row) for row in connection.execute(query).mappings()]


def revoke_token(connection: Connection, token_id: int, now: datetime) -> TokenInfo | None:
    """Revoke the token (at once: its web sign-ins end with it) and return it, or None if there is no
    such token. A token revoked already keeps the time it was revoked at."""
    tokens = ACCESS_TOKENS.c
    connection.execute(
        update(ACCESS_TOKENS).where(tokens.id == token_id, tokens.revoked_at.is_(None)).values(revoked_at=now)
    )
    row = connection.execute(select(ACCESS_TOKENS).where(tokens.id == token_id)).mappings().first()
    return None if row is None else _info(row)


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=int(row["id"]),
        role="admin" if row["role"] == "admin" else "household",
        household_id=row["household_id"],
        prefix=str(row["prefix"]),
        created_at=as_utc(row["created_at"]),
        expires_at=as_utc(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else as_utc(row["revoked_at"]),
    )
