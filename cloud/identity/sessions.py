"""Web sign-ins as server-side sessions, and who a bearer secret stands for.

Signing in on the dashboard's form (``cloud/web/pages.py``) turns a token or a retailer key into a
session: the browser's cookie holds a random session id, and the ``web_sessions`` row holds its
SHA-256, the credential it stands for and its times. The secret itself never leaves the sign-in
request. Every request with the cookie finds the row and checks both it and its credential, with
nothing cached, so a session ends:

- when its holder signs out (:func:`end_session` revokes the row);
- after :data:`IDLE_TIMEOUT` without a request, or :data:`ABSOLUTE_TIMEOUT` after signing in,
  whichever comes first;
- the moment its credential is revoked or expires (``frigo tokens revoke``, ``frigo retailers
  revoke-key``, the ``/admin`` routes).

A leaked cookie is worth at most ABSOLUTE_TIMEOUT, and nothing once its holder signed out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update

from cloud.db.engine import as_utc
from cloud.db.tables import ACCESS_TOKENS, RETAILER_KEYS, WEB_SESSIONS
from cloud.identity.retailers import KEY_PREFIX, key_of
from cloud.identity.tokens import Caller, caller_from, token_of

# A session ends after this long without a request: a dashboard left open on a shared kitchen
# tablet or a borrowed laptop signs itself out within the half hour, while someone reading and
# clicking is never interrupted (every request of the pages pushes it back).
IDLE_TIMEOUT = timedelta(minutes=30)
# ... and this long after signing in, however busy: a cookie copied off a machine is worth a working
# day at most, and signing in again each morning costs a household one paste of its token.
ABSOLUTE_TIMEOUT = timedelta(hours=12)
# A session's last request is written at most this often: the pages and their calls come several
# times a minute, and a write each would cost more than the read; the idle timeout is then up to
# this much longer, which is well inside its purpose.
TOUCH_EVERY = timedelta(minutes=1)
# Random bytes of a session id: as many as a token's, far beyond guessing.
SESSION_BYTES = 32


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a live credential stands for: a household's or an operator's token (``caller``), or a
    retailer's key (``retailer_id``); and which credential it is."""

    token_id: int | None
    key_id: int | None
    caller: Caller | None
    retailer_id: str | None
    # The household signed in to (a session's; an operator names it on the form), else the token's.
    household_id: str | None = None

    @property
    def credential(self) -> str:
        """Return a name of the credential, the same for every session and request made with it."""
        return f"token:{self.token_id}" if self.token_id is not None else f"key:{self.key_id}"


def holder_of(connection: Connection, secret: str, now: datetime) -> Holder | None:
    """Return who the bearer secret (a token or a retailer key) stands for, or None if it is no live
    credential at ``now``."""
    if secret.startswith(KEY_PREFIX):
        key = key_of(connection, secret, now)
        return None if key is None else Holder(None, key[0], None, key[1])
    token = token_of(connection, secret, now)
    if token is None:
        return None
    return Holder(token[0], None, token[1], None, token[1].household_id)


def session_hash(session_id: str) -> str:
    """Return the stored form of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(connection: Connection, holder: Holder, household_id: str | None, now: datetime) -> str:
    """Open a session standing for ``holder``'s credential, signed in to ``household_id``; return its
    id, for the cookie (it is not stored, only its hash). Sessions that ended are deleted first."""
    _prune(connection, now)
    session_id = secrets.token_urlsafe(SESSION_BYTES)
    connection.execute(
        insert(WEB_SESSIONS).values(
            session_hash=session_hash(session_id),
            token_id=holder.token_id,
            retailer_key_id=holder.key_id,
            household_id=household_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + ABSOLUTE_TIMEOUT,
        )
    )
    return session_id


def session_of(
    connection: Connection, session_id: str, now: datetime, *, touch: bool = True
) -> Holder | None:
    """Return who the session stands for, or None if it ended (signed out, idle, too old) or its
    credential is no longer live at ``now``. ``touch`` counts this as a request of the session's
    holder, which pushes its idle timeout back (a page's live stream does not: it is no one's
    activity)."""
    if not session_id:
        return None
    sessions, tokens, keys = WEB_SESSIONS.c, ACCESS_TOKENS.c, RETAILER_KEYS.c
    row = connection.execute(
        select(
            sessions.id,
            sessions.household_id,
            sessions.last_seen_at,
            tokens.id.label("token_id"),
            tokens.role,
            tokens.household_id.label("token_household"),
            keys.id.label("key_id"),
            keys.retailer_id,
        )
        .select_from(
            WEB_SESSIONS.outerjoin(
                ACCESS_TOKENS,
                (tokens.id == sessions.token_id) & tokens.revoked_at.is_(None) & (tokens.expires_at > now),
            ).outerjoin(
                RETAILER_KEYS,
                (keys.id == sessions.retailer_key_id) & keys.revoked_at.is_(None) & (keys.expires_at > now),
            )
        )
        .where(
            sessions.session_hash == session_hash(session_id),
            sessions.revoked_at.is_(None),
            sessions.expires_at > now,
            sessions.last_seen_at > now - IDLE_TIMEOUT,
        )
    ).first()
    if row is None or (row.token_id is None and row.key_id is None):
        return None  # no such session, or it ended, or its credential was revoked or expired
    if touch and as_utc(row.last_seen_at) <= now - TOUCH_EVERY:
        connection.execute(update(WEB_SESSIONS).where(sessions.id == row.id).values(last_seen_at=now))
    if row.key_id is not None:
        return Holder(None, int(row.key_id), None, str(row.retailer_id))
    caller = caller_from(str(row.role), row.token_household)
    household = row.household_id if row.household_id is not None else caller.household_id
    return Holder(int(row.token_id), None, caller, None, household)


def end_session(connection: Connection, session_id: str, now: datetime) -> bool:
    """Revoke the session (signing out); return whether a session still open was ended."""
    sessions = WEB_SESSIONS.c
    ended = connection.execute(
        update(WEB_SESSIONS)
        .where(sessions.session_hash == session_hash(session_id), sessions.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(ended.rowcount)


def _prune(connection: Connection, now: datetime) -> None:
    """Delete the sessions that ended: nothing reads them again, and signing in is rare enough to
    pay for it."""
    sessions = WEB_SESSIONS.c
    connection.execute(
        delete(WEB_SESSIONS).where(
            or_(
                sessions.revoked_at.is_not(None),
                sessions.expires_at <= now,
                sessions.last_seen_at <= now - IDLE_TIMEOUT,
            )
        )
    )
