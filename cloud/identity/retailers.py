"""Retailer accounts and their API keys.

A key is ``frk_`` and 32 random bytes (URL-safe base64); it is shown once, when it is made, and only
its SHA-256 is stored (a key has far more entropy than a password, so a fast hash is safe and a
request needs no argon2). Its first characters are kept as a prefix, so an operator can tell the
keys of a retailer apart. Each key is scoped to its retailer: every retailer route acts on the
retailer whose key came with the request, and nothing else.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, select
from sqlmodel import Session

from cloud.db.tables import RETAILER_KEYS, Retailer, RetailerKey
from cloud.errors import CloudError
from cloud.identity.tokens import token_hash

KEY_PREFIX = "frk_"
KEY_BYTES = 32
# Characters of a key kept in the clear, to tell keys apart in listings.
SHOWN = 12
# How long a key lives unless its maker says otherwise: a year, rotated with `frigo retailers key`.
KEY_LIFETIME = timedelta(days=365)


class RetailerError(CloudError, ValueError):
    """A retailer name or id that cannot be used; the message says why."""


def slug(name: str) -> str:
    """Return the retailer id made from its name: lower-case words joined by dashes."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    if not words:
        raise RetailerError(f"a retailer's name needs letters or digits, not {name!r}")
    return "-".join(words)[:64]


# An API key is stored like every bearer secret (cloud/identity/tokens.py).
key_hash = token_hash


def create_retailer(session: Session, name: str, now: datetime) -> tuple[Retailer, str]:
    """Create a retailer with its first API key; return it and the key (shown once, never stored)."""
    if not name.strip() or len(name) > 200:
        raise RetailerError("a retailer's name is 1 to 200 characters")
    retailer_id = slug(name)
    if session.get(Retailer, retailer_id) is not None:
        raise RetailerError(
            f"a retailer {retailer_id!r} exists already: `frigo retailers key` gives it a key"
        )
    retailer = Retailer(id=retailer_id, name=name.strip(), created_at=now)
    session.add(retailer)
    session.flush()
    return retailer, new_key(session, retailer_id, now)


def new_key(session: Session, retailer_id: str, now: datetime, *, lifetime: timedelta = KEY_LIFETIME) -> str:
    """Give the retailer one more API key, alive for ``lifetime``, and return it."""
    if lifetime <= timedelta(0):
        raise RetailerError("a key's lifetime must be positive")
    if session.get(Retailer, retailer_id) is None:
        raise RetailerError(f"no retailer {retailer_id!r}: `frigo retailers list` shows them")
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    session.add(
        RetailerKey(
            retailer_id=retailer_id,
            prefix=key[:SHOWN],
            key_hash=key_hash(key),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return key


def retailer_of(connection: Connection, key: str, now: datetime) -> str | None:
    """Return the id of the retailer whose key ``key`` is live at ``now`` (neither revoked nor expired),
    or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    keys = RETAILER_KEYS.c
    found = connection.execute(
        select(keys.retailer_id).where(
            keys.key_hash == key_hash(key), keys.revoked_at.is_(None), keys.expires_at > now
        )
    ).scalar_one_or_none()
    return None if found is None else str(found)
