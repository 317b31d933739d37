"""FastAPI dependencies: the clock, the database, and who the bearer token (or the web dashboard's
session cookie, ``cloud/identity/sessions.py``) says the caller is.

``create_app`` (``cloud/app.py``) keeps what they hand out on ``app.state``: the engine, the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from sqlmodel import Session

from cloud.api.schemas.common import ErrorPublic, InvalidRequestPublic
from cloud.db.tables import Household
from cloud.identity.sessions import Holder, holder_of, session_of
from cloud.identity.tokens import Caller
from shared.clock import Clock


def get_clock(request: Request) -> Clock:
    """Return the worker's clock (virtual in a simulation)."""
    clock: Clock = request.app.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_engine(request: Request) -> Engine:
    """Return the worker's database engine, for routes that open connections of their own."""
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    """Yield a database session for one request."""
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


# The two kinds of bearer secret, declared in the OpenAPI spec (securitySchemes) so that clients and
# API testers know which routes need which; the secret itself is read by _bearer.
CALLER_TOKEN = HTTPBearer(
    scheme_name="token",
    description="A household's token (frh_...) or an operator's (fra_...): `frigo tokens`.",
    auto_error=False,
)
RETAILER_KEY = HTTPBearer(
    scheme_name="retailerKey",
    description="A retailer's API key (frk_...): `frigo retailers create`.",
    auto_error=False,
)
CallerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(CALLER_TOKEN)]
RetailerKey = Annotated[HTTPAuthorizationCredentials | None, Depends(RETAILER_KEY)]

# The answers of these dependencies, for the routes' ``responses=`` (the OpenAPI spec).
Responses = dict[int | str, dict[str, Any]]
UNAUTHORIZED: Responses = {401: {"model": ErrorPublic, "description": "No valid bearer token."}}
OPERATOR_ERRORS: Responses = {
    **UNAUTHORIZED,
    403: {"model": ErrorPublic, "description": "Not an operator's token."},
}
HOUSEHOLD_ERRORS: Responses = {
    **UNAUTHORIZED,
    403: {"model": ErrorPublic, "description": "A token for another household."},
    404: {"model": ErrorPublic, "description": "No such household, or nothing of it by that id."},
}
RETAILER_ERRORS: Responses = {
    401: {"model": ErrorPublic, "description": "No valid retailer's API key."},
}
# Routes that take a body: FastAPI answers 400 to one it cannot decode (not UTF-8, say), and
# routes that refuse a request for reasons of their own answer 422 with the reason in words.
BAD_BODY: Responses = {400: {"model": ErrorPublic, "description": "The body could not be decoded."}}
INVALID_REQUEST: Responses = {
    422: {"model": InvalidRequestPublic, "description": "Invalid fields, or why the request cannot be done."}
}


def one_value_per_query_parameter(request: Request) -> None:
    """Refuse a query parameter given more than once (422): each the API takes is one value, and
    FastAPI would quietly keep the last."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            values = request.query_params.getlist(name)
            raise RequestValidationError(
                [{"type": "repeated", "loc": ("query", name), "msg": "give it once", "input": values}]
            )
        seen.add(name)


def _bearer(request: Request) -> str:
    """Return the request's bearer token, or "" if it sent none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


# The web dashboard's sign-in cookie (cloud/web/pages.py): a session id (cloud/identity/sessions.py),
# never the token or key signed in with; HttpOnly, SameSite=Strict, Secure (cloud/web/transport.py).
WEB_COOKIE = "frigo_session"
# The header the dashboard's scripts send with every request that changes something: a page of
# another site cannot send it without the browser asking first (CORS), which Frigo never allows.
WEB_HEADER = "x-frigo-web"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What a request presents: a bearer secret (a token or a retailer key), or the dashboard's session id.
Presented = tuple[Literal["bearer", "session"], str]


def presented(request: Request) -> Presented | None:
    """Return the request's credential: the bearer header's secret, or else the dashboard's session
    cookie (on a request that changes something, only with the dashboard's header); None if neither.
    An Authorization header wins: with one, the cookie does not count."""
    token = _bearer(request)
    if token or "authorization" in request.headers:
        return ("bearer", token) if token else None
    if request.method not in SAFE_METHODS and request.headers.get(WEB_HEADER) != "1":
        return None
    session_id = request.cookies.get(WEB_COOKIE, "").strip()
    return ("session", session_id) if session_id else None


def holder_in(
    connection: Connection, found: Presented, now: datetime, *, touch: bool = True
) -> Holder | None:
    """Return who the presented credential stands for at ``now``, or None if it is no live one."""
    kind, secret = found
    if kind == "bearer":
        return holder_of(connection, secret, now)
    return session_of(connection, secret, now, touch=touch)


def holder(engine: Engine, request: Request, now: datetime) -> Holder | None:
    """Return who the request's bearer secret or session cookie stands for, or None."""
    found = presented(request)
    if found is None:
        return None
    # A transaction of its own: a session's last request is written (sessions.TOUCH_EVERY) whatever
    # the route does with its own.
    with engine.begin() as connection:
        return holder_in(connection, found, now)


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(401, f"send {what}", headers={"WWW-Authenticate": "Bearer"})


def retailer_id(request: Request, engine: EngineDep, clock: ClockDep, _: RetailerKey) -> str:
    """Return the retailer whose API key came with the request (or stands behind the dashboard's
    session, as ``presented`` allows), or answer 401."""
    found = holder(engine, request, clock.now())
    if found is None or found.retailer_id is None:
        raise _unauthorized(
            "the retailer's API key as 'Authorization: Bearer frk_...' (frigo retailers create)"
        )
    return found.retailer_id


RetailerDep = Annotated[str, Depends(retailer_id)]


def signed_caller(request: Request, engine: EngineDep, clock: ClockDep, _: CallerToken) -> Holder:
    """Return the holder of the request's household's or operator's token (its bearer header, or the
    dashboard's session), or answer 401."""
    found = holder(engine, request, clock.now())
    if found is None or found.caller is None:
        raise _unauthorized(
            "a household's or an operator's token as 'Authorization: Bearer frh_...' "
            "(frigo tokens household HOUSEHOLD_ID, or frigo tokens admin)"
        )
    return found


HolderDep = Annotated[Holder, Depends(signed_caller)]


def caller(who: HolderDep) -> Caller:
    """Return who holds the request's token, or answer 401."""
    assert who.caller is not None  # signed_caller lets no other holder through
    return who.caller


CallerDep = Annotated[Caller, Depends(caller)]


def household_access(household_id: str, who: CallerDep) -> None:
    """Let through the household's own token and operators' tokens; answer 403 to the rest."""
    if not who.may_see(household_id):
        raise HTTPException(403, f"this token is not for household {household_id!r}")


# Routes of one household: its own token, or an operator's.
OWN = [Depends(household_access)]
# Largest page a listing route returns.
MAX_PAGE = 1000
# The largest id a table holds (a signed 64-bit integer in SQLite and PostgreSQL): a larger one in a
# query cannot even be compared with them.
MAX_ID = 2**63 - 1


def admin_only(who: CallerDep) -> None:
    """Let through operators' tokens only."""
    if who.role != "admin":
        raise HTTPException(403, "an operator's token is needed (frigo tokens admin)")


def household_or_404(session: Session, household_id: str) -> Household:
    """Return the household, or answer 404."""
    household = session.get(Household, household_id)
    if household is None:
        raise HTTPException(404, f"no household {household_id!r}; GET /households lists them")
    return household
