"""Who a request comes from, for the middlewares that run before any route: the body and rate
limits (``cloud/api/limits.py``) and the Idempotency-Key store (``cloud/api/idempotency.py``).

The credential is found the way the routes find it (``cloud/api/dependencies.py``: the bearer
header's token or retailer key, or the dashboard's session cookie) and checked against the
database at the worker's clock, once per request. It only *names* the caller: the route still
authorises the request with its own dependency. A secret that no live credential could be (no
``frh_``, ``fra_`` or ``frk_`` prefix) is turned away without a database query, so a flood of junk
tokens costs no connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio.to_thread
from fastapi import Request
from sqlalchemy import Engine
from starlette.types import Scope

from cloud.api.dependencies import Presented, holder_in, presented
from cloud.identity.retailers import KEY_PREFIX
from cloud.identity.tokens import PREFIXES
from shared.clock import Clock

# Where the answer is kept in the request's scope, so that the next middleware does not ask again.
_STATE_KEY = "frigo.credential"
_SECRET_PREFIXES = (*PREFIXES.values(), KEY_PREFIX)


@dataclass(frozen=True, slots=True)
class Credential:
    """A live credential a request came with."""

    # The same for every request and web session made with it ("token:12", "key:3"), never the secret.
    name: str
    kind: Literal["household", "operator", "retailer"]


async def credential_of(scope: Scope, engine: Engine, clock: Clock) -> Credential | None:
    """Return the live credential the request came with, or None (no credential, or not a live one)."""
    state = scope.setdefault("state", {})
    if _STATE_KEY not in state:
        found = presented(Request(scope))
        live = None
        if found is not None and (found[0] == "session" or found[1].startswith(_SECRET_PREFIXES)):
            live = await anyio.to_thread.run_sync(_look_up, engine, found, clock.now())
        state[_STATE_KEY] = live
    credential: Credential | None = state[_STATE_KEY]
    return credential


def _look_up(engine: Engine, found: Presented, now: datetime) -> Credential | None:
    # touch=False: naming the caller is not a request of the session's holder; the route's own
    # dependency counts it (a page's live stream must not keep its session awake).
    with engine.connect() as connection:
        holder = holder_in(connection, found, now, touch=False)
    if holder is None:
        return None
    if holder.caller is None:
        return Credential(holder.credential, "retailer")
    return Credential(holder.credential, "operator" if holder.caller.role == "admin" else "household")
