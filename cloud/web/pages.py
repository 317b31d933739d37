"""The dashboards' pages, server-rendered with Jinja2 (left out of the OpenAPI schema; every asset
ships in the package, nothing from a CDN).

- ``/web/sign-in``: a form that takes the household's token (or an operator's, or a retailer's API
  key) and opens a server-side session for it (``cloud/identity/sessions.py``): the cookie
  (``frigo_session``: HttpOnly, SameSite=Strict, Secure as ``cloud/web/transport.py`` decides) holds
  the session's random id, never the token. ``POST /web/sign-out`` ends the session. Both forms
  refuse a post from another site (403), so no page elsewhere signs a browser in or out.
- ``/web/households/{id}``: the household's page (``cloud/web/households.py``): its inventory by
  location with expiry badges, what runs out soon (p10/p50/p90 days), the baskets awaiting an
  answer, its orders, its offers, its consents, the export of its data and its erasure. The
  buttons call the JSON API with ``fetch()``; the session stands for the token there
  (``cloud.api.dependencies.presented``).
- ``/web/households/{id}/inventory``: the inventory section alone, for the live updates.
- ``/web/retailer``: the retailer's page (``cloud/web/retailers.py``): its order queue with the
  moves each order allows (the buttons send If-Match with the order's version), its catalog's
  summary, its campaigns' A/B results with a chart, its webhook endpoints' delivery logs.

A page for a household the session's token may not see answers 403 with no data of it, and so do a
household's pages under a retailer's key and the retailer's page under a household's token; without
a live session (signed out, timed out, or its token or key revoked or expired), pages redirect to the
sign-in form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from cloud.api.dependencies import WEB_COOKIE, ClockDep, EngineDep, get_clock
from cloud.identity.sessions import (
    ABSOLUTE_TIMEOUT,
    IDLE_TIMEOUT,
    Holder,
    end_session,
    holder_of,
    start_session,
)
from cloud.web.access import household_exists, signed_in
from cloud.web.households import dashboard, inventory
from cloud.web.retailers import retailer_dashboard
from cloud.web.streams import format_marks
from cloud.web.transport import cookie_secure, insecure, same_origin

router = APIRouter(include_in_schema=False)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _error(request: Request, title: str, message: str, status_code: int) -> HTMLResponse:
    return _page(request, "error.html", {"title": title, "message": message}, status_code)


def _sign_in_page(request: Request, error: str | None, status_code: int = 200) -> HTMLResponse:
    context = {
        "title": "Sign in",
        "error": error,
        "idle_minutes": int(IDLE_TIMEOUT.total_seconds() // 60),
        "absolute_hours": int(ABSOLUTE_TIMEOUT.total_seconds() // 3600),
    }
    return _page(request, "sign_in.html", context, status_code)


def _sign_in_redirect() -> RedirectResponse:
    return RedirectResponse("/web/sign-in", status_code=303)


def _refused(request: Request, engine: Engine, household_id: str) -> Response | None:
    """Return the answer for a caller who may not see the household's pages, or None."""
    who = signed_in(engine, request)
    if who is None:
        return _sign_in_redirect()
    if who.caller is None:
        return _error(
            request,
            "Not a household's sign-in",
            "A retailer's key opens the retailer's page only.",
            403,
        )
    if not who.caller.may_see(household_id):
        return _error(request, "Not your household", "This sign-in is not for that household.", 403)
    if not household_exists(engine, household_id):
        return _error(request, "No such household", "", 404)
    return None


def _cross_site(request: Request) -> Response:
    return _error(
        request,
        "Refused: the form came from another site",
        "Frigo signs in and out only from its own pages, so that no other site can do it for you. "
        "Open this site's sign-in page yourself (/web/sign-in) and use its form.",
        403,
    )


def _needs_https(request: Request) -> Response:
    return _error(
        request,
        "Sign-in needs HTTPS",
        "This page came over plain HTTP, which would carry your token in clear text and cannot keep "
        "a secure sign-in. Open it over HTTPS. Operators: put a TLS-terminating reverse proxy in front "
        "of the cloud (README: Web sign-in, sessions and HTTPS).",
        403,
    )


def _keep_session(request: Request, response: Response, session_id: str) -> None:
    """Put the session's id in the sign-in cookie."""
    response.set_cookie(
        WEB_COOKIE,
        session_id,
        max_age=int(ABSOLUTE_TIMEOUT.total_seconds()),
        httponly=True,
        samesite="strict",
        path="/",
        secure=cookie_secure(request),
    )


@router.get("/")
def root() -> Response:
    return RedirectResponse("/web", status_code=303)


@router.get("/web")
def web_home(request: Request, engine: EngineDep) -> Response:
    """Send the caller to its own page: the retailer's, or the household it signed in to."""
    who = signed_in(engine, request)
    if who is not None and who.retailer_id is not None:
        return RedirectResponse("/web/retailer", status_code=303)
    if who is None or who.household_id is None:
        return _sign_in_redirect()
    return RedirectResponse(f"/web/households/{quote(who.household_id, safe='')}", status_code=303)


@router.get("/web/sign-in")
def sign_in_form(request: Request) -> Response:
    if insecure(request):
        return _needs_https(request)
    return _sign_in_page(request, None)


@router.post("/web/sign-in")
async def sign_in(request: Request, engine: EngineDep) -> Response:
    """Open a session for a valid token or key and send the caller to its page."""
    if not same_origin(request):
        return _cross_site(request)
    if insecure(request):
        return _needs_https(request)
    # The form is read by hand: FastAPI's Form() needs python-multipart, which nothing else needs.
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    token = (form.get("token") or [""])[0].strip()
    wanted = (form.get("household") or [""])[0].strip()
    previous = request.cookies.get(WEB_COOKIE, "")
    now = get_clock(request).now()

    def check() -> Holder | None:
        with engine.connect() as connection:
            return holder_of(connection, token, now)

    def open_session(who: Holder, household: str | None) -> str:
        with engine.begin() as connection:
            if previous:  # this browser's earlier sign-in, if any, ends here
                end_session(connection, previous, now)
            return start_session(connection, who, household, now)

    who = await run_in_threadpool(check)
    household: str | None = None
    if who is not None and who.retailer_id is not None:
        target = "/web/retailer"
    else:
        caller = None if who is None else who.caller
        household = caller.household_id if caller is not None and caller.role == "household" else wanted
        if who is None or caller is None or not household or not caller.may_see(household):
            message = (
                "That token is not valid."
                if who is None
                else "An operator's token needs the household's id too."
            )
            return _sign_in_page(request, message, 401)
        target = f"/web/households/{quote(household, safe='')}"
    session_id = await run_in_threadpool(open_session, who, household)
    response = RedirectResponse(target, status_code=303)
    _keep_session(request, response, session_id)
    return response


@router.post("/web/sign-out")
def sign_out(request: Request, engine: EngineDep, clock: ClockDep) -> Response:
    """End the browser's session on the server (its cookie opens nothing from now on) and drop it."""
    if not same_origin(request):
        return _cross_site(request)
    session_id = request.cookies.get(WEB_COOKIE, "")
    if session_id:
        with engine.begin() as connection:
            end_session(connection, session_id, clock.now())
    response = _sign_in_redirect()
    response.delete_cookie(
        WEB_COOKIE, path="/", httponly=True, samesite="strict", secure=cookie_secure(request)
    )
    return response


@router.get("/web/households/{household_id}")
def household_page(household_id: str, request: Request, engine: EngineDep, clock: ClockDep) -> Response:
    refused = _refused(request, engine, household_id)
    if refused is not None:
        return refused
    now = clock.now()
    with engine.connect() as connection:
        context = dashboard(connection, household_id, now)
    context.update(title=f"Household {household_id}", household_id=household_id, now=now)
    return _page(request, "household.html", context)


@router.get("/web/households/{household_id}/inventory")
def inventory_section(household_id: str, request: Request, engine: EngineDep, clock: ClockDep) -> Response:
    refused = _refused(request, engine, household_id)
    if refused is not None:
        return refused
    with engine.connect() as connection:
        found = inventory(connection, household_id, clock.now())
    return _page(request, "_inventory.html", {"inventory": found, "household_id": household_id})


@router.get("/web/retailer")
def retailer_page(request: Request, engine: EngineDep, clock: ClockDep) -> Response:
    who = signed_in(engine, request)
    if who is None:
        return _sign_in_redirect()
    if who.retailer_id is None:
        return _error(
            request,
            "Not a retailer's sign-in",
            "Sign in with the retailer's API key (frk_...).",
            403,
        )
    with engine.connect() as connection:
        context = retailer_dashboard(connection, who.retailer_id, clock.now())
    context.update(title=f"Retailer {context['retailer_name']}", marks_text=format_marks(context["marks"]))
    return _page(request, "retailer.html", context)
