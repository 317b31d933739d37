"""Who the request's token (the bearer header's, or the sign-in cookie's) says the caller is, for
the pages and their streams; the JSON API's routes use ``cloud.api.dependencies`` instead."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import Engine, select

from cloud.api.dependencies import caller_token, get_clock
from cloud.db.tables import HOUSEHOLDS
from cloud.identity.retailers import KEY_PREFIX, retailer_of
from cloud.identity.tokens import Caller, caller_of


def signed_in(engine: Engine, request: Request) -> Caller | None:
    """Return the household or operator the request's token stands for, or None."""
    token = caller_token(request)
    if not token:
        return None
    with engine.connect() as connection:
        return caller_of(connection, token, get_clock(request).now())


def signed_in_retailer(engine: Engine, request: Request) -> str | None:
    """Return the retailer whose API key the request carries, or None."""
    token = caller_token(request)
    if not token.startswith(KEY_PREFIX):
        return None
    with engine.connect() as connection:
        return retailer_of(connection, token, get_clock(request).now())


def household_exists(engine: Engine, household_id: str) -> bool:
    """Return whether the household exists."""
    with engine.connect() as connection:
        found = connection.execute(select(HOUSEHOLDS.c.id).where(HOUSEHOLDS.c.id == household_id)).first()
    return found is not None
