"""Who the request's credential (the sign-in cookie's session, or a bearer header) says the caller
is, for the pages and their streams; the JSON API's routes use ``cloud.api.dependencies`` instead,
which this shares its rules with."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import Engine, select

from cloud.api.dependencies import get_clock, holder
from cloud.db.tables import HOUSEHOLDS
from cloud.identity.sessions import Holder


def signed_in(engine: Engine, request: Request) -> Holder | None:
    """Return who the request's session (or bearer secret) stands for, or None: a household's or an
    operator's token (``caller``) or a retailer's key (``retailer_id``)."""
    return holder(engine, request, get_clock(request).now())


def household_exists(engine: Engine, household_id: str) -> bool:
    """Return whether the household exists."""
    with engine.connect() as connection:
        found = connection.execute(select(HOUSEHOLDS.c.id).where(HOUSEHOLDS.c.id == household_id)).first()
    return found is not None
