"""The pages' live updates, as server-sent events (left out of the OpenAPI schema).

- ``/households/{id}/stream``: one ``events`` event whenever new events of the household are
  stored (looked for every HOUSEHOLD_TICK_S); the page then reloads its inventory section.
- ``/retailer/stream``: one ``changed`` event naming the sections (orders, webhooks, campaigns)
  whose marks (``cloud.web.retailers.marks``, every RETAILER_TICK_S) moved; the page then reloads
  those sections.

Each tick of a stream is one database round trip in a thread that first checks the stream's
credential again (its session, or the bearer secret it came with): a stream ends at the first tick
after a sign-out, a revocation or an expiry, within a second. A stream also ends when the client
leaves, when the worker stops (``app.state.web_closing``, set by ``cloud/service.py``) or after
STREAM_S; the browser's EventSource then reconnects by itself, from the last event id (and stops at
the 401 of a credential that ended).

Streams are capped (:class:`StreamSlots`: STREAMS_PER_CALLER per credential, MAX_STREAMS per
worker; 429 beyond), and their ticks run on STREAM_THREADS threads of their own: however many are
open and however slow the database, they never hold a thread the API's routes need.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from enum import Enum
from typing import Annotated, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, Engine, func, select
from starlette.types import Receive, Scope, Send

from cloud.api.dependencies import EngineDep, Presented, get_clock, holder_in, presented
from cloud.db.tables import EVENTS, HOUSEHOLDS
from cloud.identity.sessions import Holder
from cloud.web.retailers import marks

router = APIRouter(include_in_schema=False)

# How often a stream checks its credential and looks for news, in one round trip. At most a second,
# so a stream ends within a second of a sign-out or a revocation. A household's half a second: a
# scan on the fridge shows on the page within 2 s (tests/web/test_dashboard.py), with the section's
# reload; the retailer's marks are several queries, and a second is soon enough for an order queue.
HOUSEHOLD_TICK_S = 0.5
RETAILER_TICK_S = 1.0
# How often a quiet stream says it is alive, and how long it lasts before the browser reconnects.
HEARTBEAT_S = 15.0
STREAM_S = 300.0
# Streams one credential may hold open in a worker: a dashboard in a few tabs or on a few devices of
# one household. More are a page reloading in a loop or a script, which polling the API serves.
STREAMS_PER_CALLER = 4
# Streams open in a worker in all. Measured (2,000 events; a shared 2-core machine), a household's
# tick takes 1.3 ms on SQLite and 1.8 ms on PostgreSQL, a retailer's 2.8 and 3.8 ms: 200 streams
# keep STREAM_THREADS threads under a quarter busy (0.4 to 0.8 thread-seconds a second). Far past
# that, ticks would queue and the updates come late for everyone.
MAX_STREAMS = 200
# Threads the ticks of all streams share (an anyio limiter of their own, apart from the 40 of the
# API's routes): enough for a slow query or two without holding up every stream.
STREAM_THREADS = 4
# The longest marks text a retailer's stream takes back (its three sections' marks fit easily).
MARK_LENGTH = 400
MAX_ID = 2**63 - 1

T = TypeVar("T")


class _Tick(Enum):
    """What a tick says when the stream's credential is no longer live."""

    ENDED = "ended"


class StreamSlots:
    """The streams open in a worker, counted by credential for the caps, and the limiter their ticks
    run under. Used from the event loop only, so it needs no lock."""

    def __init__(
        self, per_caller: int = STREAMS_PER_CALLER, total: int = MAX_STREAMS, threads: int = STREAM_THREADS
    ) -> None:
        self.per_caller = per_caller
        self.total = total
        self.threads = threads
        self.open: Counter[str] = Counter()
        self._limiter: CapacityLimiter | None = None

    @property
    def limiter(self) -> CapacityLimiter:
        """Return the ticks' limiter (made in the event loop at the first stream: anyio needs one)."""
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.threads)
        return self._limiter

    def take(self, credential: str) -> Callable[[], None]:
        """Count a stream of ``credential``, or answer 429; return what gives its place back (once)."""
        if self.open[credential] >= self.per_caller:
            raise HTTPException(
                429,
                f"this sign-in has {self.per_caller} live streams open already: close a tab of the "
                "dashboard, or poll the API instead",
                headers={"Retry-After": "60"},
            )
        if self.open.total() >= self.total:
            raise HTTPException(
                429,
                f"this worker serves {self.total} live streams already: try again in a minute",
                headers={"Retry-After": "60"},
            )
        self.open[credential] += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.open[credential] -= 1
                if self.open[credential] <= 0:
                    del self.open[credential]

        return give_back


class EventStream(StreamingResponse):
    """Server-sent events that give their stream's place back however they end (the client leaves,
    the stream ends, the worker stops, an error)."""

    def __init__(self, content: AsyncIterator[str], give_back: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._give_back = give_back

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._give_back()


def _slots(request: Request) -> StreamSlots:
    slots: StreamSlots = request.app.state.web_streams
    return slots


async def _in_thread(request: Request, work: Callable[[], T]) -> T:
    """Run ``work`` on one of the streams' own threads."""
    return await anyio.to_thread.run_sync(work, limiter=_slots(request).limiter)


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


def _newer(connection: Connection, household_id: str, after: int) -> tuple[int, int]:
    """Return the newest event id of the household above ``after`` (``after`` if none) and how many."""
    newest, count = connection.execute(
        select(func.max(EVENTS.c.id), func.count()).where(
            EVENTS.c.household_id == household_id, EVENTS.c.id > after
        )
    ).one()
    return (int(newest), int(count)) if newest is not None else (after, 0)


def _signed_in(connection: Connection, found: Presented | None, request: Request) -> Holder | None:
    """Return who the stream's credential stands for now, or None. A stream is no one's activity:
    it does not push a session's idle timeout back."""
    if found is None:
        return None
    return holder_in(connection, found, get_clock(request).now(), touch=False)


def _open(
    request: Request,
    engine: Engine,
    found: Presented,
    who: Holder,
    poll: Callable[[Connection], str | None],
    every_s: float,
) -> EventStream:
    """Answer with server-sent events: what ``poll`` returns each tick, while the credential ``found``
    stands for ``who``; a comment when nothing came for a while; until the client leaves, the
    credential ends, the worker stops or STREAM_S passed. 429 past the caps."""
    closing = _closing(request)
    give_back = _slots(request).take(who.credential)

    def tick() -> str | _Tick | None:
        with engine.connect() as connection:
            still = _signed_in(connection, found, request)
            if still is None or still.credential != who.credential:
                return _Tick.ENDED
            return poll(connection)

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        quiet_since, ends = loop.time(), loop.time() + STREAM_S
        yield "retry: 1000\n\n"
        while not closing.is_set() and loop.time() < ends:
            if await request.is_disconnected():
                return
            message = await _in_thread(request, tick)
            if message is _Tick.ENDED:
                return
            if message is not None:
                quiet_since = loop.time()
                yield message
            elif loop.time() - quiet_since > HEARTBEAT_S:
                quiet_since = loop.time()
                yield ": still here\n\n"
            await asyncio.sleep(every_s)

    return EventStream(events(), give_back)


@router.get("/households/{household_id}/stream")
async def household_stream(
    household_id: str,
    request: Request,
    engine: EngineDep,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Events above this id are new.")] = 0,
) -> StreamingResponse:
    """Send an ``events`` event whenever new events of the household are stored."""
    found = presented(request)

    def check() -> tuple[Holder | None, bool]:
        with engine.connect() as connection:
            who = _signed_in(connection, found, request)
            known = connection.execute(select(HOUSEHOLDS.c.id).where(HOUSEHOLDS.c.id == household_id))
            return who, known.first() is not None

    who, exists = await _in_thread(request, check)
    if found is None or who is None or who.caller is None:
        raise HTTPException(401, "send a household's token", headers={"WWW-Authenticate": "Bearer"})
    if not who.caller.may_see(household_id):
        raise HTTPException(403, f"this token is not for household {household_id!r}")
    if not exists:
        raise HTTPException(404, f"no household {household_id!r}")
    resumed = request.headers.get("last-event-id", "")
    last = int(resumed) if resumed.isdigit() and int(resumed) <= MAX_ID else after

    def poll(connection: Connection) -> str | None:
        nonlocal last
        newest, count = _newer(connection, household_id, last)
        if newest <= last:
            return None
        last = newest
        return f"event: events\nid: {newest}\ndata: {json.dumps({'last_id': newest, 'new': count})}\n\n"

    return _open(request, engine, found, who, poll, HOUSEHOLD_TICK_S)


@router.get("/retailer/stream")
async def retailer_stream(
    request: Request,
    engine: EngineDep,
    since: Annotated[str, Query(max_length=MARK_LENGTH, description="The page's marks.")] = "",
) -> StreamingResponse:
    """Send a ``changed`` event naming the page's sections whenever what they show changes."""
    found = presented(request)

    def check() -> Holder | None:
        with engine.connect() as connection:
            return _signed_in(connection, found, request)

    who = await _in_thread(request, check)
    if found is None or who is None or who.retailer_id is None:
        raise HTTPException(401, "send a retailer's API key", headers={"WWW-Authenticate": "Bearer"})
    retailer = who.retailer_id
    resumed = request.headers.get("last-event-id", "")[:MARK_LENGTH]
    seen = parse_marks(resumed if resumed else since)

    def poll(connection: Connection) -> str | None:
        nonlocal seen
        now = marks(connection, retailer)
        changed = sorted(section for section, mark in now.items() if seen.get(section) != mark)
        if not changed:
            return None
        seen = now
        data = json.dumps({"sections": changed})
        return f"event: changed\nid: {format_marks(now)}\ndata: {data}\n\n"

    return _open(request, engine, found, who, poll, RETAILER_TICK_S)
