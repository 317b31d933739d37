"""Who is calling: households' and operators' bearer tokens, and what each may see.

A household token (``frh_…``) opens its own household's routes and nothing else; an admin token
(``fra_…``) opens every household's and the operators' routes. Tokens are shown once and stored as
their SHA-256 (a token has far more entropy than a password). Every token expires
(:data:`LIFETIMES`, or the lifetime asked for when it is made) and can be revoked. Retailers have keys
of their own (:mod:`cloud.identity.retailers`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, select
from sqlmodel import Session

from cloud.db.tables import ACCESS_TOKENS, AccessToken, Household
from cloud.errors import CloudError

Role = Literal["household", "admin"]
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


def caller_of(connection: Connection, token: str, now: datetime) -> Caller | None:
    """Return who holds ``token``, or None if it is no live token at ``now`` (revoked or expired)."""
    if not token.startswith(tuple(PREFIXES.values())):
        return None
    tokens = ACCESS_TOKENS.c
    row = connection.execute(
        select(tokens.role, tokens.household_id).where(
            tokens.token_hash == token_hash(token), tokens.revoked_at.is_(None), tokens.expires_at > now
        )
    ).first()
    if row is None:
        return None
    role: Role = "admin" if row[0] == "admin" else "household"
    return Caller(role, None if row[1] is None else str(row[1]))
