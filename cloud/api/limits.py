"""What one request and one caller may cost, checked before any route or authentication runs.

Two ASGI middlewares, outermost first (``cloud/app.py``):

- :class:`BodyLimitMiddleware` answers 413 as soon as ``Content-Length`` says too much, and stops a
  body sent without one (chunked) at the first chunk past the limit: nothing reads more than
  :data:`MAX_BODY` of a request without a live credential, nor more than a route's own limit
  (:data:`LARGER_BODIES`) with one;
- :class:`RateLimitMiddleware` counts requests per credential (a household's token, an operator's,
  a retailer's key, or the web session signed in with one) and per client address for requests
  without a live credential, and answers 429 with ``Retry-After`` past :class:`RateLimits`.
  ``/healthz`` and ``/readyz`` are not counted: load balancers and orchestrators probe them.

The counts live in this worker's memory (the ``limits`` library's moving window): with N workers
behind a load balancer a caller gets up to N times each limit, so divide the fleet-wide rate you
mean by the number of workers. ``limits`` keeps shared counts only in Redis, Memcached, MongoDB or
etcd, none of which Frigo runs; a worker restart forgets its counts.

:func:`declare_limits` adds both answers to the OpenAPI spec of every operation they can reach.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api.credentials import Credential, credential_of
from shared.clock import Clock

MiB = 2**20
# The largest body of any route but the catalog's, with a request's every list and string at its
# schema's longest and escaped to ASCII (\uXXXX, as Python's json.dumps writes it): a retailer's
# order event with 200 substitutions and 200 deliveries, 268 KiB; 1,000 slots take 143 KiB
# indented. 1 MiB leaves room and is also all that a request without a live credential may send.
MAX_BODY = 1 * MiB
# A catalog upload holds up to 10,000 items (cloud/api/schemas/retail.py, MAX_CATALOG_ITEMS):
# measured at 1.7 MiB with everyday names, 3.7 MiB with every name and category at their longest,
# 6.0 MiB in a 2-byte script (UTF-8) and 15.1 MiB escaped to ASCII. Only a live retailer's key may
# send more than MAX_BODY, so that a request without one makes the worker buffer little.
CATALOG_BODY = 16 * MiB
LARGER_BODIES: Mapping[str, int] = {"/retailer/catalog": CATALOG_BODY}

# Rates, in the limits library's notation ("120/minute", "10/second;300/minute"); each a setting
# (cloud/settings.py). A household's app and dashboard read a few routes when something changes (the
# open page gets its changes over one stream): 2 a second on average, with room for a page's burst.
HOUSEHOLD_RATE = "120/minute"
# The demo's console view (frigo demo) asks for every household's inventory each second with one
# operator's token: 52 a second at its 50 fridges; operators' scripts page through listings.
OPERATOR_RATE = "6000/minute"
# A retailer's system moves each order along (3 to 5 events) and publishes slots and its catalog.
RETAILER_RATE = "1200/minute"
# Requests without a live credential: the sign-in page and its assets, the spec, failed sign-ins.
# Lower than any credential's: it is what a flood of junk tokens or guesses meets.
ADDRESS_RATE = "60/minute"
# Not counted: probed often, by machines, and they say nothing but up or down.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
# An IPv6 client usually has a whole /64 to pick addresses from: count the /64 as one address.
IPV6_PREFIX = 64


def check_rate(rate: str) -> str:
    """Return ``rate`` if the limits library reads it; raise ValueError saying how to write one."""
    try:
        parse_many(rate)
    except ValueError:
        raise ValueError(
            f"{rate!r} is not a rate: write COUNT/PERIOD (second, minute, hour, day), "
            'or several separated by ";", e.g. "10/second;300/minute"'
        ) from None
    return rate


@dataclass(frozen=True)
class RateLimits:
    """The rates per credential kind and per client address (for requests without a live one)."""

    household: str = HOUSEHOLD_RATE
    operator: str = OPERATOR_RATE
    retailer: str = RETAILER_RATE
    address: str = ADDRESS_RATE
    _items: dict[str, list[RateLimitItem]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rates = {"household": self.household, "operator": self.operator, "retailer": self.retailer}
        rates["address"] = self.address
        items = {kind: parse_many(check_rate(rate)) for kind, rate in rates.items()}
        object.__setattr__(self, "_items", items)

    def items(self, kind: str) -> list[RateLimitItem]:
        """Return the parsed limits of a credential kind, or of "address"."""
        return self._items[kind]


class BodyLimitMiddleware:
    """Answer 413 to a body over the limit of its route, before the route reads it."""

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        clock: Clock,
        *,
        limit: int = MAX_BODY,
        larger: Mapping[str, int] = LARGER_BODIES,
    ) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock
        self.limit = limit
        self.larger = larger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        largest = max(self.limit, self.larger.get(path, self.limit))
        declared = _content_length(scope)
        if declared is not None and declared > largest:
            await _too_large(send, largest, path)
            return
        if declared is not None and declared > self.limit and not await self.allows_more(scope):
            await _too_large(send, self.limit, path, anonymous=True)
            return
        await _Limited(self, scope, receive, send, largest).run()

    async def allows_more(self, scope: Scope) -> bool:
        """Return whether the request may send more than ``limit``, up to its route's larger limit:
        whether it comes with a live credential."""
        return await credential_of(scope, self.engine, self.clock) is not None


class _Limited:
    """One request whose body is counted as it arrives (it came without Content-Length, or within it)."""

    def __init__(
        self, middleware: BodyLimitMiddleware, scope: Scope, receive: Receive, send: Send, largest: int
    ) -> None:
        self.middleware, self.scope, self._receive, self._send = middleware, scope, receive, send
        self.largest = largest
        self.allowed = middleware.limit  # raised to ``largest`` once a live credential is seen
        self.received = 0
        self.over: int | None = None  # the limit passed, once it is
        self.started = False

    async def run(self) -> None:
        # Answered below; a layer that caught it instead answered through self.send.
        with contextlib.suppress(_BodyTooLarge):
            await self.middleware.app(self.scope, self.receive, self.send)
        if self.over is not None and not self.started:
            await self._answer()

    async def receive(self) -> Message:
        if self.over is not None:
            raise _BodyTooLarge
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if (
                self.received > self.allowed
                and self.allowed < self.largest
                and await self.middleware.allows_more(self.scope)
            ):
                self.allowed = self.largest
            if self.received > self.allowed:
                self.over = self.allowed
                raise _BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.over is not None:
            # Whatever a layer below answers to the body it could not read (FastAPI: 400), the
            # client is told the real reason, once.
            if not self.started:
                await self._answer()
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _answer(self) -> None:
        self.started = True
        assert self.over is not None
        anonymous = self.over < self.largest
        await _too_large(self._send, self.over, self.scope["path"], anonymous=anonymous)


class _BodyTooLarge(Exception):
    """Raised to the app reading a body past its limit; BodyLimitMiddleware answers 413."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses such a request before it gets here
    return None


async def _too_large(send: Send, limit: int, path: str, *, anonymous: bool = False) -> None:
    if anonymous:
        detail = (
            f"a request without a live credential sends at most {_size(limit)}: send the bearer "
            "token or retailer key (Authorization: Bearer ...) with it"
        )
    elif path in LARGER_BODIES:
        detail = (
            f"the body is over {_size(limit)}, the most {path} takes: send it in several requests "
            "(each upload adds to or updates the catalog)"
        )
    else:
        detail = f"the body is over {_size(limit)}, the most {path} takes: send less in one request"
    # Connection: close: the client may still be sending the body; the connection cannot be reused.
    await _answer(send, 413, {"detail": detail}, [(b"connection", b"close")])


def _size(count: int) -> str:
    return f"{count // MiB} MiB" if count % MiB == 0 else f"{count // 1024} KiB"


class RateLimitMiddleware:
    """Answer 429 with Retry-After to a caller or an address past its rate."""

    def __init__(self, app: ASGIApp, engine: Engine, clock: Clock, rates: RateLimits | None = None) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock
        self.rates = rates or RateLimits()
        # Counted on the wall clock (time.time()), not the worker's clock: a simulation's virtual
        # clock may stand still or leap days, and a caller's real rate is what costs the worker.
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        credential = await credential_of(scope, self.engine, self.clock)
        kind, key = _counted_as(scope, credential)
        for item in self.rates.items(kind):
            if not self.limiter.hit(item, key):
                reset_at, _ = self.limiter.get_window_stats(item, key)
                retry_after = max(1, math.ceil(reset_at - time.time()))
                whose = "this client address without a live credential" if credential is None else kind
                detail = (
                    f"too many requests: {whose} may send {item.amount} per "
                    f"{_period(item)}; retry in {retry_after} s"
                )
                await _answer(send, 429, {"detail": detail}, [(b"retry-after", str(retry_after).encode())])
                return
        await self.app(scope, receive, send)


def _counted_as(scope: Scope, credential: Credential | None) -> tuple[str, str]:
    """Return which limits a request counts against, and under which key."""
    if credential is not None:
        return credential.kind, credential.name
    client = scope.get("client")
    host = client[0] if client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "address", host
    if address.version == 6:
        return "address", str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return "address", str(address)


def _period(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


async def _answer(
    send: Send, status: int, document: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- the OpenAPI spec ----------------------------------------------------------------------------

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}
TOO_LARGE: dict[str, Any] = {
    "description": f"The body is too large: over {_size(MAX_BODY)} ({_size(CATALOG_BODY)} for a "
    "catalog upload with a retailer's key).",
    "content": _ERROR,
}
TOO_MANY: dict[str, Any] = {
    "description": "Too many requests from this credential, or from this address without one.",
    "headers": {
        "Retry-After": {
            "description": "Seconds until a request is counted again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": _ERROR,
}


def declare_limits(app: FastAPI) -> None:
    """Add 413 to the spec of every operation that takes a body, and 429 to every counted one."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        spec = build()
        if first:  # FastAPI builds the spec once and keeps it: add to it once
            for path, operations in spec.get("paths", {}).items():
                for operation in operations.values():
                    if not isinstance(operation, dict):
                        continue  # a path's own parameters, not an operation
                    responses = operation.setdefault("responses", {})
                    if "requestBody" in operation:
                        responses.setdefault("413", TOO_LARGE)
                    if path not in UNLIMITED_PATHS:
                        responses.setdefault("429", TOO_MANY)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the spec
