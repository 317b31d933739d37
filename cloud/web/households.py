"""The household's web dashboard: server-rendered pages (Jinja2), a little JavaScript, live updates.

Pages (left out of the OpenAPI schema; every asset ships in the package, nothing from a CDN):

- ``/web/sign-in``: a form that takes the household's token (or an operator's, or a retailer's API
  key) and keeps it in an HttpOnly, SameSite=Strict cookie (``frigo_token``); ``POST /web/sign-out``
  drops it.
- ``/web/households/{id}``: the household's inventory by location with expiry badges, what runs
  out soon (p10/p50/p90 days), the baskets awaiting an answer, its orders, its offers, its consents,
  the export of its data and its erasure. The buttons call the JSON API with ``fetch()``; the
  cookie stands for the bearer token there (``cloud.api.dependencies.caller_token``).
- ``/web/households/{id}/inventory``: the inventory section alone, for the live updates.
- ``/web/retailer``: the retailer's page (``cloud/web/retailers.py``): its order queue with the
  moves each order allows (the buttons send If-Match with the order's version), its catalog's
  summary, its campaigns' A/B results with a chart, its webhook endpoints' delivery logs.
- ``/households/{id}/stream``: server-sent events, one ``events`` event whenever new events of the
  household are stored (the events table is polled every 0.3 s); the page then reloads its
  inventory section.
- ``/retailer/stream``: server-sent events for the retailer's page, one ``changed`` event naming
  the sections (orders, webhooks, campaigns) whose marks (``retailerpages.marks``, polled every
  second) moved; the page then reloads those sections.

A page for a household the cookie's token may not see answers 403 with no data of it, and so do a
household's pages under a retailer's key and the retailer's page under a household's token; without
a valid cookie, pages redirect to the sign-in form.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine, func, select
from starlette.concurrency import run_in_threadpool

from cloud.api.dependencies import WEB_COOKIE, caller_token
from cloud.commerce import consents
from cloud.db.engine import as_utc
from cloud.db.tables import (
    CATALOG_ITEMS,
    EVENTS,
    HOUSEHOLDS,
    OFFERS,
    ORDERS,
    PLANNED_ORDER_LINES,
    PLANNED_ORDERS,
    RETAILERS,
)
from cloud.identity.retailers import KEY_PREFIX, retailer_of
from cloud.identity.tokens import Caller, caller_of
from cloud.planning.planner import plan_households
from cloud.web.retailers import marks, retailer_dashboard
from shared.clock import Clock

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
# How often a stream looks for new events, how often it says it is alive, and how long it lasts
# before the browser reconnects (EventSource does by itself, from the last event id).
POLL_S = 0.3
RETAILER_POLL_S = 1.0
MARK_LENGTH = 400
HEARTBEAT_S = 15.0
STREAM_S = 300.0
MAX_ID = 2**63 - 1
LOT_EVENTS = ("item_added", "item_consumed", "item_discarded", "item_opened", "item_moved")
LOCATIONS = ("fridge", "door", "freezer")
PURPOSES = ("ordering", "offers", "analytics")
OPEN_BASKETS = ("suggested", "proposed")
# The forecast chart's scale, in days, and width, in pixels.
CHART_DAYS = 14
MAX_CHART_DAYS = 42
CHART_WIDTH = 180
SOON_DAYS = 2
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class Lot:
    """A lot in the fridge as the household's events leave it."""

    code: str
    name: str
    quantity: float
    unit: str
    location: str
    best_before: date | None
    opened: bool = False
    badge: str = "none"
    badge_text: str = "no date"


@dataclass
class Inventory:
    """The household's lots by location, and the id of the last event they include."""

    by_location: dict[str, list[Lot]] = field(default_factory=dict)
    last_event_id: int = 0

    @property
    def count(self) -> int:
        return sum(len(lots) for lots in self.by_location.values())


# What each kind of alert is called on the page.
ALERT_NAMES = {
    "expiring": "About to expire",
    "expired": "Expired",
    "temperature_high": "Fridge too warm",
    "door_open": "Door left open",
}


def expiry(best_before: date | None, today: date) -> tuple[str, str]:
    """Return the badge (expired, soon, ok or none) and its text for a best-before date."""
    if best_before is None:
        return "none", "no date"
    days = (best_before - today).days
    if days < 0:
        return "expired", f"expired {-days} d ago"
    if days == 0:
        return "soon", "use today"
    if days <= SOON_DAYS:
        return "soon", f"{days} d left"
    return "ok", f"{days} d left"


def _today(connection: Connection, household_id: str, now: datetime) -> date:
    zone = connection.execute(select(HOUSEHOLDS.c.timezone).where(HOUSEHOLDS.c.id == household_id)).scalar()
    try:
        return as_utc(now).astimezone(ZoneInfo(str(zone or "UTC"))).date()
    except (ZoneInfoNotFoundError, ValueError):
        return as_utc(now).date()


def _names(connection: Connection, household_id: str, codes: set[str]) -> dict[str, str]:
    """Return products' names from the catalogs, the household's retailer's first."""
    if not codes:
        return {}
    retailer = connection.execute(
        select(HOUSEHOLDS.c.retailer_id).where(HOUSEHOLDS.c.id == household_id)
    ).scalar()
    rows = connection.execute(
        select(CATALOG_ITEMS.c.gtin, CATALOG_ITEMS.c.name, CATALOG_ITEMS.c.retailer_id).where(
            CATALOG_ITEMS.c.gtin.in_(sorted(codes))
        )
    ).all()
    names: dict[str, str] = {}
    for gtin, name, _owner in sorted(rows, key=lambda r: r.retailer_id == retailer):
        names[str(gtin)] = str(name)
    return names


def inventory(connection: Connection, household_id: str, now: datetime) -> Inventory:
    """Replay the household's lot events into its lots: where each is, how much is left, and its
    best-before date (the latest an ``item_added`` or ``item_opened`` gave)."""
    rows = connection.execute(
        select(EVENTS.c.id, EVENTS.c.device_id, EVENTS.c.payload)
        .where(EVENTS.c.household_id == household_id, EVENTS.c.type.in_(LOT_EVENTS))
        .order_by(EVENTS.c.id)
    ).all()
    last = connection.execute(
        select(func.max(EVENTS.c.id)).where(EVENTS.c.household_id == household_id)
    ).scalar()
    lots: dict[tuple[str, int], Lot] = {}
    for row in rows:
        event: dict[str, Any] = json.loads(row.payload)
        key = (str(row.device_id), int(event.get("lot_id", 0)))
        kind = event.get("type")
        if kind == "item_added":
            bb = event.get("best_before")
            lots[key] = Lot(
                code=str(event["code"]),
                name=str(event["code"]),
                quantity=float(event.get("quantity", 1)),
                unit=str(event.get("unit", "unit")),
                location=str(event.get("location", "fridge")),
                best_before=None if bb is None else date.fromisoformat(bb),
            )
            continue
        lot = lots.get(key)
        if lot is None:
            continue  # a lot added before the cloud kept events, or on another fridge's count
        if kind in ("item_consumed", "item_discarded"):
            lot.quantity -= float(event.get("quantity", 1))
        elif kind == "item_opened":
            lot.opened = True
            bb = event.get("best_before")
            lot.best_before = None if bb is None else date.fromisoformat(bb)
        elif kind == "item_moved":
            lot.location = str(event.get("to_location", lot.location))
    left = [lot for lot in lots.values() if lot.quantity > 1e-9]
    names = _names(connection, household_id, {lot.code for lot in left})
    today = _today(connection, household_id, now)
    result = Inventory(last_event_id=int(last or 0))
    for lot in left:
        lot.name = names.get(lot.code, lot.code)
        lot.quantity = round(lot.quantity, 3)
        lot.badge, lot.badge_text = expiry(lot.best_before, today)
        result.by_location.setdefault(lot.location, []).append(lot)
    ordered = sorted(result.by_location, key=lambda loc: (*LOCATIONS, loc).index(loc))
    result.by_location = {
        loc: sorted(result.by_location[loc], key=lambda lot: (lot.best_before or date.max, lot.name))
        for loc in ordered
    }
    return result


def _x(days: float, scale: int) -> float:
    """Return where ``days`` falls on a forecast chart of ``scale`` days."""
    days = scale if not math.isfinite(days) else min(max(days, 0.0), scale)
    return round(days / scale * CHART_WIDTH, 1)


def chart_scale(p90s: list[float]) -> int:
    """Return the forecast chart's scale in days: whole weeks that hold the p90s, 2 to 6 of them."""
    finite = [d for d in p90s if math.isfinite(d)]
    weeks = math.ceil(max(finite, default=0.0) / 7)
    return 7 * min(max(weeks, CHART_DAYS // 7), MAX_CHART_DAYS // 7)


def _days(days: float) -> str:
    return "never" if not math.isfinite(days) else f"{days:.1f}"


def running_out(
    connection: Connection, household_id: str, now: datetime, limit: int = 8
) -> tuple[int, list[dict[str, Any]]]:
    """Return the forecast chart's scale in days and the household's products that run out soonest,
    with p10/p50/p90 days and their places on the chart."""
    (plan,) = plan_households(connection, [household_id], now)
    items = sorted(
        (item for item in plan.items if math.isfinite(item.days_left[1])),
        key=lambda i: (i.days_left[1], i.code),
    )[:limit]
    names = _names(connection, household_id, {item.code for item in items})
    scale = chart_scale([item.days_left[2] for item in items])
    return scale, [
        {
            "code": item.code,
            "name": names.get(item.code, item.code),
            "stock": round(item.stock, 2),
            "unit": item.unit,
            "p10": _days(item.days_left[0]),
            "p50": _days(item.days_left[1]),
            "p90": _days(item.days_left[2]),
            "x10": _x(item.days_left[0], scale),
            "x50": _x(item.days_left[1], scale),
            "x90": _x(item.days_left[2], scale),
            "reason": item.reason,
        }
        for item in items
    ]


def baskets(connection: Connection, household_id: str, now: datetime) -> list[dict[str, Any]]:
    """Return the baskets awaiting the household: suggested or proposed, or automatic ones that can
    still be cancelled."""
    rows = connection.execute(
        select(PLANNED_ORDERS)
        .where(PLANNED_ORDERS.c.household_id == household_id)
        .order_by(PLANNED_ORDERS.c.created_at.desc(), PLANNED_ORDERS.c.id)
        .limit(20)
    ).all()
    waiting = [
        row
        for row in rows
        if row.status in OPEN_BASKETS
        or (
            row.status == "approved"
            and row.cancellable_until is not None
            and as_utc(row.cancellable_until) > as_utc(now)
        )
    ]
    result = []
    for row in waiting:
        lines = connection.execute(
            select(PLANNED_ORDER_LINES)
            .where(PLANNED_ORDER_LINES.c.order_id == row.id)
            .order_by(PLANNED_ORDER_LINES.c.code)
        ).all()
        names = _names(connection, household_id, {str(line.code) for line in lines})
        result.append(
            {
                "id": row.id,
                "status": row.status,
                "created_at": as_utc(row.created_at),
                "cancellable_until": None if row.cancellable_until is None else as_utc(row.cancellable_until),
                "lines": [
                    {
                        "name": names.get(line.code, line.code),
                        "packs": line.packs,
                        "quantity": line.quantity,
                        "unit": line.unit,
                        "reason": line.reason,
                    }
                    for line in lines
                ],
            }
        )
    return result


def alerts(connection: Connection, household_id: str) -> list[dict[str, Any]]:
    """Return the alerts the household's fridges raised and have not cleared, newest first."""
    rows = connection.execute(
        select(EVENTS.c.type, EVENTS.c.payload)
        .where(EVENTS.c.household_id == household_id, EVENTS.c.type.in_(["alert_raised", "alert_cleared"]))
        .order_by(EVENTS.c.occurred_at, EVENTS.c.id)
    ).all()
    holding: dict[tuple[str, str, str], dict[str, Any]] = {}
    for kind, payload in rows:
        body = json.loads(payload)
        key = (str(body["device_id"]), str(body["kind"]), str(body["subject"]))
        if kind == "alert_cleared":
            holding.pop(key, None)
        else:
            holding[key] = {
                "kind": ALERT_NAMES.get(str(body["kind"]), str(body["kind"])),
                "severity": "expired" if body["kind"] in ("expired", "temperature_high") else "soon",
                "detail": str(body["detail"]),
                "since": datetime.fromisoformat(str(body["since"])),
                "fridge": str(body["device_id"]),
            }
    return sorted(holding.values(), key=lambda alert: alert["since"], reverse=True)


def dashboard(connection: Connection, household_id: str, now: datetime) -> dict[str, Any]:
    """Return everything the household's page shows."""
    orders = connection.execute(
        select(ORDERS)
        .where(ORDERS.c.household_id == household_id)
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id)
        .limit(10)
    ).all()
    offers = connection.execute(
        select(OFFERS)
        .where(OFFERS.c.household_id == household_id)
        .order_by(OFFERS.c.created_at.desc(), OFFERS.c.id)
        .limit(20)
    ).all()
    retailers = connection.execute(select(RETAILERS.c.id, RETAILERS.c.name).order_by(RETAILERS.c.name)).all()
    active: dict[tuple[str, str], consents.Grant] = {}
    for grant in consents.ledger(connection, household_id):
        if grant.active_at(now):
            active.setdefault((grant.recipient, grant.purpose), grant)
    scale, soonest = running_out(connection, household_id, now)
    return {
        "inventory": inventory(connection, household_id, now),
        "alerts": alerts(connection, household_id),
        "running_out": soonest,
        "chart_width": CHART_WIDTH,
        "chart_days": scale,
        "baskets": baskets(connection, household_id, now),
        "orders": [
            {
                "id": o.id,
                "status": o.status,
                "total": o.total,
                "currency": o.currency,
                "retailer": o.retailer_id,
                "created_at": as_utc(o.created_at),
            }
            for o in orders
        ],
        "offers": [
            {
                "id": o.id,
                "name": o.name,
                "retailer": o.retailer_id,
                "category": o.category,
                "reason": o.reason,
                "data": [c for c in str(o.data_categories).split(",") if c],
                "status": o.status,
                "expires_at": as_utc(o.expires_at),
            }
            for o in offers
        ],
        "consents": [
            {
                "retailer": r.id,
                "name": r.name,
                "purposes": [{"purpose": p, "grant": active.get((str(r.id), p))} for p in PURPOSES],
            }
            for r in retailers
        ],
    }


def _caller(engine: Engine, request: Request) -> Caller | None:
    token = caller_token(request)
    if not token:
        return None
    with engine.connect() as connection:
        return caller_of(connection, token)


def _retailer(engine: Engine, request: Request) -> str | None:
    token = caller_token(request)
    if not token.startswith(KEY_PREFIX):
        return None
    with engine.connect() as connection:
        return retailer_of(connection, token)


def _exists(engine: Engine, household_id: str) -> bool:
    with engine.connect() as connection:
        found = connection.execute(select(HOUSEHOLDS.c.id).where(HOUSEHOLDS.c.id == household_id)).first()
    return found is not None


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _sign_in_redirect() -> RedirectResponse:
    return RedirectResponse("/web/sign-in", status_code=303)


def _newer(engine: Engine, household_id: str, after: int) -> tuple[int, int]:
    """Return the newest event id of the household above ``after`` (``after`` if none) and how many."""
    with engine.connect() as connection:
        newest, count = connection.execute(
            select(func.max(EVENTS.c.id), func.count()).where(
                EVENTS.c.household_id == household_id, EVENTS.c.id > after
            )
        ).one()
    return (int(newest), int(count)) if newest is not None else (after, 0)


def _format_marks(found: dict[str, str]) -> str:
    return "~".join(f"{section}={mark}" for section, mark in sorted(found.items()))


def _parse_marks(text: str) -> dict[str, str]:
    """Read what ``_format_marks`` wrote; anything else is no marks (every section is then new)."""
    pairs = (part.partition("=") for part in text.split("~") if part)
    return {section: mark for section, sep, mark in pairs if sep}


def _event_stream(
    request: Request, closing: threading.Event, poll: Callable[[], str | None], every_s: float
) -> StreamingResponse:
    """Answer with server-sent events: what ``poll`` (run in a thread every ``every_s``) returns, a
    comment when nothing came for a while, until the client leaves, the worker stops or
    STREAM_S passed (the browser then reconnects by itself, from the last event id)."""

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        quiet_since, ends = loop.time(), loop.time() + STREAM_S
        yield "retry: 1000\n\n"
        while not closing.is_set() and loop.time() < ends:
            if await request.is_disconnected():
                return
            message = await run_in_threadpool(poll)
            if message is not None:
                quiet_since = loop.time()
                yield message
            elif loop.time() - quiet_since > HEARTBEAT_S:
                quiet_since = loop.time()
                yield ": still here\n\n"
            await asyncio.sleep(every_s)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def register(app: FastAPI, clock: Clock) -> None:
    """Add the dashboard's pages, their static files and their live streams to ``app``."""
    closing = threading.Event()
    # Set when the worker stops, so that open streams end and the server can shut down.
    app.state.web_closing = closing
    app.mount("/web/static", StaticFiles(directory=HERE / "static"), name="web-static")

    def engine_of(request: Request) -> Engine:
        engine: Engine = request.app.state.engine
        return engine

    def guarded(request: Request, household_id: str) -> Response | None:
        """Return the answer for a caller who may not see the household's page, or None."""
        engine = engine_of(request)
        who = _caller(engine, request)
        if who is None and _retailer(engine, request) is not None:
            return _page(
                request,
                "error.html",
                {
                    "title": "Not a household's sign-in",
                    "message": "A retailer's key opens the retailer's page only.",
                },
                403,
            )
        if who is None:
            return _sign_in_redirect()
        if not who.may_see(household_id):
            return _page(
                request,
                "error.html",
                {"title": "Not your household", "message": "This sign-in is not for that household."},
                403,
            )
        if not _exists(engine, household_id):
            return _page(request, "error.html", {"title": "No such household", "message": ""}, 404)
        return None

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/web", status_code=303)

    @app.get("/web", include_in_schema=False)
    def web_home(request: Request) -> Response:
        engine = engine_of(request)
        if _retailer(engine, request) is not None:
            return RedirectResponse("/web/retailer", status_code=303)
        who = _caller(engine, request)
        if who is None or who.household_id is None:
            return _sign_in_redirect()
        return RedirectResponse(f"/web/households/{quote(who.household_id, safe='')}", status_code=303)

    @app.get("/web/sign-in", include_in_schema=False)
    def sign_in_form(request: Request) -> Response:
        return _page(request, "sign_in.html", {"title": "Sign in", "error": None})

    @app.post("/web/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        token = (form.get("token") or [""])[0].strip()
        wanted = (form.get("household") or [""])[0].strip()
        engine = engine_of(request)

        def check() -> tuple[Caller | None, str | None]:
            with engine.connect() as connection:
                return caller_of(connection, token), retailer_of(connection, token)

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

    @app.post("/web/sign-out", include_in_schema=False)
    def sign_out() -> Response:
        response = _sign_in_redirect()
        response.delete_cookie(WEB_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/web/households/{household_id}", include_in_schema=False)
    def household_page(household_id: str, request: Request) -> Response:
        refused = guarded(request, household_id)
        if refused is not None:
            return refused
        now = clock.now()
        with engine_of(request).connect() as connection:
            context = dashboard(connection, household_id, now)
        context.update(title=f"Household {household_id}", household_id=household_id, now=now)
        return _page(request, "household.html", context)

    @app.get("/web/retailer", include_in_schema=False)
    def retailer_page(request: Request) -> Response:
        engine = engine_of(request)
        retailer = _retailer(engine, request)
        if retailer is None:
            if _caller(engine, request) is None:
                return _sign_in_redirect()
            return _page(
                request,
                "error.html",
                {
                    "title": "Not a retailer's sign-in",
                    "message": "Sign in with the retailer's API key (frk_...).",
                },
                403,
            )
        with engine.connect() as connection:
            context = retailer_dashboard(connection, retailer)
        context.update(
            title=f"Retailer {context['retailer_name']}", marks_text=_format_marks(context["marks"])
        )
        return _page(request, "retailer.html", context)

    @app.get("/web/households/{household_id}/inventory", include_in_schema=False)
    def inventory_section(household_id: str, request: Request) -> Response:
        refused = guarded(request, household_id)
        if refused is not None:
            return refused
        with engine_of(request).connect() as connection:
            found = inventory(connection, household_id, clock.now())
        return _page(request, "_inventory.html", {"inventory": found, "household_id": household_id})

    @app.get("/households/{household_id}/stream", include_in_schema=False)
    async def stream(
        household_id: str,
        request: Request,
        after: Annotated[int, Query(ge=0, le=MAX_ID, description="Events above this id are new.")] = 0,
    ) -> StreamingResponse:
        """Send an ``events`` event whenever new events of the household are stored."""
        engine = engine_of(request)
        who = await run_in_threadpool(_caller, engine, request)
        if who is None:
            raise HTTPException(401, "send a household's token", headers={"WWW-Authenticate": "Bearer"})
        if not who.may_see(household_id):
            raise HTTPException(403, f"this token is not for household {household_id!r}")
        if not await run_in_threadpool(_exists, engine, household_id):
            raise HTTPException(404, f"no household {household_id!r}")
        resumed = request.headers.get("last-event-id", "")
        last = int(resumed) if resumed.isdigit() and int(resumed) <= MAX_ID else after

        def poll() -> str | None:
            nonlocal last
            newest, count = _newer(engine, household_id, last)
            if newest <= last:
                return None
            last = newest
            return f"event: events\nid: {newest}\ndata: {json.dumps({'last_id': newest, 'new': count})}\n\n"

        return _event_stream(request, closing, poll, POLL_S)

    @app.get("/retailer/stream", include_in_schema=False)
    async def retailer_stream(
        request: Request,
        since: Annotated[str, Query(max_length=MARK_LENGTH, description="The page's marks.")] = "",
    ) -> StreamingResponse:
        """Send a ``changed`` event naming the page's sections whenever what they show changes."""
        engine = engine_of(request)
        retailer = await run_in_threadpool(_retailer, engine, request)
        if retailer is None:
            raise HTTPException(401, "send a retailer's API key", headers={"WWW-Authenticate": "Bearer"})
        resumed = request.headers.get("last-event-id", "")[:MARK_LENGTH]
        seen = _parse_marks(resumed if resumed else since)

        def poll() -> str | None:
            nonlocal seen
            with engine.connect() as connection:
                now = marks(connection, retailer)
            changed = sorted(section for section, mark in now.items() if seen.get(section) != mark)
            if not changed:
                return None
            seen = now
            data = json.dumps({"sections": changed})
            return f"event: changed\nid: {_format_marks(now)}\ndata: {data}\n\n"

        return _event_stream(request, closing, poll, RETAILER_POLL_S)
