"""The pages' live updates, as server-sent events (left out of the OpenAPI schema).

- ``/households/{id}/stream``: one ``events`` event whenever new events of the household are
  stored (the events table is polled every 0.3 s); the page then reloads its inventory section.
- ``/retailer/stream``: one ``changed`` event naming the sections (orders, webhooks, campaigns)
  whose marks (``cloud.web.retailers.marks``, polled every second) moved; the page then reloads
  those sections.

A stream ends when the client leaves, when the worker stops (``app.state.web_closing``, set by
``cloud/service.py``) or after STREAM_S; the browser's EventSource then reconnects by itself, from
the last event id.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from cloud.api.dependencies import EngineDep
from cloud.db.tables import EVENTS
from cloud.web.access import household_exists, signed_in, signed_in_retailer
from cloud.web.retailers import marks

router = APIRouter(include_in_schema=False)

# How often a stream looks for new events, how often it says it is alive, and how long it lasts
# before the browser reconnects (EventSource does by itself, from the last event id).
POLL_S = 0.3
RETAILER_POLL_S = 1.0
HEARTBEAT_S = 15.0
STREAM_S = 300.0
# The longest marks text a retailer's stream takes back (its three sections' marks fit easily).
MARK_LENGTH = 400
MAX_ID = 2**63 - 1


def format_marks(found: dict[str, str]) -> str:
    """Write the retailer page's marks as one event id (and query value): ``section=mark~...``."""
    return "~".join(f"{section}={mark}" for section, mark in sorted(found.items()))


def parse_marks(text: str) -> dict[str, str]:
    """Read what ``format_marks`` wrote; anything else is no marks (every section is then new)."""
    pairs = (part.partition("=") for part in text.split("~") if part)
    return {section: mark for section, sep, mark in pairs if sep}


def _closing(request: Request) -> threading.Event:
    closing: threading.Event = request.app.state.web_closing
    return closing


def _newer(engine: Engine, household_id: str, after: int) -> tuple[int, int]:
    """Return the newest event id of the household above ``after`` (``after`` if none) and how many."""
    with engine.connect() as connection:
        newest, count = connection.execute(
            select(func.max(EVENTS.c.id), func.count()).where(
                EVENTS.c.household_id == household_id, EVENTS.c.id > after
            )
        ).one()
    return (int(newest), int(count)) if newest is not None else (after, 0)


def _event_stream(request: Request, poll: Callable[[], str | None], every_s: float) -> StreamingResponse:
    """Answer with server-sent events: what ``poll`` (run in a thread every ``every_s``) returns, a
    comment when nothing came for a while, until the client leaves, the worker stops or
    STREAM_S passed."""
    closing = _closing(request)

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


@router.get("/households/{household_id}/stream")
async def household_stream(
    household_id: str,
    request: Request,
    engine: EngineDep,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Events above this id are new.")] = 0,
) -> StreamingResponse:
    """Send an ``events`` event whenever new events of the household are stored."""
    who = await run_in_threadpool(signed_in, engine, request)
    if who is None:
        raise HTTPException(401, "send a household's token", headers={"WWW-Authenticate": "Bearer"})
    if not who.may_see(household_id):
        raise HTTPException(403, f"this token is not for household {household_id!r}")
    if not await run_in_threadpool(household_exists, engine, household_id):
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

    return _event_stream(request, poll, POLL_S)


@router.get("/retailer/stream")
async def retailer_stream(
    request: Request,
    engine: EngineDep,
    since: Annotated[str, Query(max_length=MARK_LENGTH, description="The page's marks.")] = "",
) -> StreamingResponse:
    """Send a ``changed`` event naming the page's sections whenever what they show changes."""
    retailer = await run_in_threadpool(signed_in_retailer, engine, request)
    if retailer is None:
        raise HTTPException(401, "send a retailer's API key", headers={"WWW-Authenticate": "Bearer"})
    resumed = request.headers.get("last-event-id", "")[:MARK_LENGTH]
    seen = parse_marks(resumed if resumed else since)

    def poll() -> str | None:
        nonlocal seen
        with engine.connect() as connection:
            now = marks(connection, retailer)
        changed = sorted(section for section, mark in now.items() if seen.get(section) != mark)
        if not changed:
            return None
        seen = now
        data = json.dumps({"sections": changed})
        return f"event: changed\nid: {format_marks(now)}\ndata: {data}\n\n"

    return _event_stream(request, poll, RETAILER_POLL_S)
