"""The dashboards' pages, server-rendered with Jinja2 (left out of the OpenAPI schema; every asset
ships in the package, nothing from a CDN).

- ``/web/sign-in``: a form that takes the household's token (or an operator's, or a retailer's API
  key) and keeps it in an HttpOnly, SameSite=Strict cookie (``frigo_token``); ``POST /web/sign-out``
  drops it.
- ``/web/households/{id}``: the household's page (``cloud/web/households.py``): its inventory by
  location with expiry badges, what runs out soon (p10/p50/p90 days), the baskets awaiting an
  answer, its orders, its offers, its consents, the export of its data and its erasure. The
  buttons call the JSON API with ``fetch()``; the cookie stands for the bearer token there
  (``cloud.api.dependencies.caller_token``).
- ``/web/households/{id}/inventory``: the inventory section alone, for the live updates.
- ``/web/retailer``: the retailer's page (``cloud/web/retailers.py``): its order queue with the
  moves each order allows (the buttons send If-Match with the order's version), its catalog's
  summary, its campaigns' A/B results with a chart, its webhook endpoints' delivery logs.

A page for a household the cookie's token may not see answers 403 with no data of it, and so do a
household's pages under a retailer's key and the retailer's page under a household's token; without
a valid cookie, pages redirect to the sign-in form.
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
from cloud.identity.retailers import retailer_of
from cloud.identity.tokens import Caller, caller_of
from cloud.web.access import household_exists, signed_in, signed_in_retailer
from cloud.web.households import dashboard, inventory
from cloud.web.retailers import retailer_dashboard
from cloud.web.streams import format_marks

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


def _sign_in_redirect() -> RedirectResponse:
    return RedirectResponse("/web/sign-in", status_code=303)


def _refused(request: Request, engine: Engine, household_id: str) -> Response | None:
    """Return the answer for a caller who may not see the household's pages, or None."""
    who = signed_in(engine, request)
    if who is None and signed_in_retailer(engine, request) is not None:
        return _error(
            request,
            "Not a household's sign-in",
            "A retailer's key opens the retailer's page only.",
            403,
        )
    if who is None:
        return _sign_in_redirect()
    if not who.may_see(household_id):
        return _error(request, "Not your household", "This sign-in is not for that household.", 403)
    if not household_exists(engine, household_id):
        return _error(request, "No such household", "", 404)
    return None


@router.get("/")
def root() -> Response:
    return RedirectResponse("/web", status_code=303)


@router.get("/web")
def web_home(request: Request, engine: EngineDep) -> Response:
    """Send the caller to its own page: the retailer's, or its household's."""
    if signed_in_retailer(engine, request) is not None:
        return RedirectResponse("/web/retailer", status_code=303)
    who = signed_in(engine, request)
    if who is None or who.household_id is None:
        return _sign_in_redirect()
    return RedirectResponse(f"/web/households/{quote(who.household_id, safe='')}", status_code=303)


@router.get("/web/sign-in")
def sign_in_form(request: Request) -> Response:
    return _page(request, "sign_in.html", {"title": "Sign in", "error": None})


@router.post("/web/sign-in")
async def sign_in(request: Request, engine: EngineDep) -> Response:
    """Keep a valid token in the sign-in cookie and send the caller to its page."""
    # The form is read by hand: FastAPI's Form() needs python-multipart, which nothing else needs.
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    token = (form.get("token") or [""])[0].strip()
    wanted = (form.get("household") or [""])[0].strip()

    now = get_clock(request).now()

    def check() -> tuple[Caller | None, str | None]:
        with engine.connect() as connection:
            return caller_of(connection, token, now), retailer_of(connection, token, now)

    who, retailer = await run_in_threadpool(check)
    if retailer is not None:
        target = "/web/retailer"
    else:
        household = who.household_id if who is not None and who.role == "household" else wanted
        if who is None or not household or not who.may_see(household):
            message = (
                "That token is not valid."
                if who is None
                else "An operator's token needs the household's id too."
            )
            return _page(request, "sign_in.html", {"title": "Sign in", "error": message}, 401)
        target = f"/web/households/{quote(household, safe='')}"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        WEB_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/web/sign-out")
def sign_out() -> Response:
    response = _sign_in_redirect()
    response.delete_cookie(WEB_COOKIE, path="/", httponly=True, samesite="strict")
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
def retailer_page(request: Request, engine: EngineDep) -> Response:
    retailer = signed_in_retailer(engine, request)
    if retailer is None:
        if signed_in(engine, request) is None:
            return _sign_in_redirect()
        return _error(
            request,
            "Not a retailer's sign-in",
            "Sign in with the retailer's API key (frk_...).",
            403,
        )
    with engine.connect() as connection:
        context = retailer_dashboard(connection, retailer)
    context.update(title=f"Retailer {context['retailer_name']}", marks_text=format_marks(context["marks"]))
    return _page(request, "retailer.html", context)
