"""Retailer accounts and their API keys.

A key is ``frk_`` and 32 random bytes (URL-safe base64); it is shown once, when it is made, and only
its SHA-256 is stored (a key has far more entropy than a password, so a fast hash is safe and a
request needs no argon2). Its first characters are kept as a prefix, so an operator can tell the
keys of a retailer apart. Each key is scoped to its retailer: every retailer route acts on the
retailer whose key came with the request, and nothing else. A key expires (:data:`KEY_LIFETIME`, or
the lifetime asked for) and can be revoked (:func:`revoke_key`: `frigo retailers revoke-key`,
``POST /admin/retailers/{id}/keys/{key}/revoke``); the web sign-ins made with it end with it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlmodel import Session

from cloud.db.engine import as_utc
from cloud.db.tables import RETAILER_KEYS, RETAILERS, Retailer, RetailerKey
from cloud.errors import CloudError
from cloud.identity.tokens import State, state_at, token_hash

KEY_PREFIX = "frk_"
KEY_BYTES = 32
# Characters of a key kept in the clear, to tell keys apart in listings.
SHOWN = 12
# How long a key lives unless its maker says otherwise: a year, rotated with `frigo retailers key`.
KEY_LIFETIME = timedelta(days=365)


class RetailerError(CloudError, ValueError):
    """A retailer name or id that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A retailer's key as an operator sees it: its first characters, never the key or its hash."""

    id: int
    retailer_id: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def state(self, now: datetime) -> State:
        """Return whether the key is live, expired or revoked at ``now``."""
        return state_at(self.expires_at, self.revoked_at, now)


def slug(name: str) -> str:
    """Return the retailer id made from its name: lower-case words joined by dashes."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    if not words:
        raise RetailerError(f"a retailer's name needs letters or digits, not {name!r}")
    return "-".join(words)[:64]


# An API key is stored like every bearer secret (cloud/identity/tokens.py).
key_hash = token_hash


def create_retailer(
    session: Session, name: str, now: datetime, *, lifetime: timedelta = KEY_LIFETIME
) -> tuple[Retailer, str]:
    """Create a retailer with its first API key (alive for ``lifetime``); return it and the key (shown
    once, never stored)."""
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
    return retailer, new_key(session, retailer_id, now, lifetime=lifetime)


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


def key_of(connection: Connection, key: str, now: datetime) -> tuple[int, str] | None:
    """Return the id of ``key``'s row and of its retailer, or None if it is no live key at ``now``
    (unknown, revoked or expired)."""
    if not key.startswith(KEY_PREFIX):
        return None
    keys = RETAILER_KEYS.c
    row = connection.execute(
        select(keys.id, keys.retailer_id).where(
            keys.key_hash == key_hash(key), keys.revoked_at.is_(None), keys.expires_at > now
        )
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def retailer_of(connection: Connection, key: str, now: datetime) -> str | None:
    """Return the id of the retailer whose key ``key`` is live at ``now`` (neither revoked nor expired),
    or None."""
    found = key_of(connection, key, now)
    return None if found is None else found[1]


def list_keys(connection: Connection, retailer_id: str) -> list[KeyInfo] | None:
    """Return the retailer's keys, live or not, oldest first; None if there is no such retailer."""
    if connection.execute(select(RETAILERS.c.id).where(RETAILERS.c.id == retailer_id)).first() is None:
        return None
    keys = RETAILER_KEYS.c
    rows = connection.execute(select(RETAILER_KEYS).where(keys.retailer_id == retailer_id).order_by(keys.id))
    return [_info(row) for row in rows.mappings()]


def revoke_key(connection: Connection, retailer_id: str, key_id: int, now: datetime) -> KeyInfo | None:
    """Revoke the retailer's key (at once: its web sign-ins end with it) and return it, or None if the
    retailer has no such key. A key revoked already keeps the time it was revoked at."""
    keys = RETAILER_KEYS.c
    mine = (keys.id == key_id, keys.retailer_id == retailer_id)
    connection.execute(update(RETAILER_KEYS).where(*mine, keys.revoked_at.is_(None)).values(revoked_at=now))
    row = connection.execute(select(RETAILER_KEYS).where(*mine)).mappings().first()
    return None if row is None else _info(row)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=int(row["id"]),
        retailer_id=str(row["retailer_id"]),
        prefix=str(row["prefix"]),
        created_at=as_utc(row["created_at"]),
        expires_at=as_utc(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else as_utc(row["revoked_at"]),
    )
