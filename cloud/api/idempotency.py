"""Idempotency keys on POST requests, with Stripe's semantics.

A client that sends ``Idempotency-Key: K`` with a POST can send the same request again after a
timeout or a dropped connection without doing the work twice:

- the first request with K runs, and its response (status, body, type) is stored under K;
- the same key with the same request (method, path, query and body) gets the stored response
  again, with ``Idempotent-Replayed: true``;
- the same key with another request gets 422: a key names one request;
- the same key while the first request still runs gets 409: retry a moment later;
- a key over 255 characters gets 400.

Keys belong to the caller's credential (its token or retailer key, whether it came as the bearer
header or behind the dashboard's session: ``cloud/api/credentials.py``), so two callers' keys never
collide. Only a live credential's keys are stored: a request without one runs as if it had no key
(its route answers 401), so that no one can fill the table without signing in. Keys are kept
:data:`KEEP`, then forgotten: the planning schedule (``cloud/scheduler.py``) calls :func:`purge`
every hour. A response of 500 or more is not stored: the request did not finish, and the same key
may try again. Requests without the header run as usual. The body limit
(``cloud/api/limits.py``) runs first: nothing buffered here is larger than it lets through.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, delete, select, update
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api.credentials import credential_of
from cloud.db.engine import insert_ignoring_duplicates
from cloud.db.tables import IDEMPOTENCY_KEYS
from shared.clock import Clock

HEADER = "idempotency-key"
MAX_KEY = 255
# Stripe's retention: a client retries within minutes or hours, not days.
KEEP = timedelta(hours=24)


class IdempotencyMiddleware:
    """Replay the stored response of a POST whose Idempotency-Key was seen with the same request."""

    def __init__(self, app: ASGIApp, engine: Engine, clock: Clock) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        key = headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY:
            await _answer(send, 400, {"detail": f"an Idempotency-Key is 1 to {MAX_KEY} characters"})
            return
        credential = await credential_of(scope, self.engine, self.clock)
        if credential is None:
            await self.app(scope, receive, send)
            return
        principal = credential.name
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body came: nothing to run, no one to answer
        request_hash = hashlib.sha256(
            b"\n".join(
                [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body]
            )
        ).hexdigest()
        claimed, stored = await anyio.to_thread.run_sync(self._claim, principal, key, request_hash)
        if not claimed:
            await self._answer_stored(send, stored, request_hash)
            return
        response: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        held: list[Message] = []

        async def replay() -> Message:
            nonlocal body
            chunk, body = body, b""
            return {"type": "http.request", "body": chunk, "more_body": False}

        async def capture(message: Message) -> None:
            # Held back until the response is stored: a retry sent the moment this one is
            # answered must find it done, not in flight.
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response["body"] += message.get("body", b"")
            held.append(message)

        try:
            await self.app(scope, replay, capture)
        except BaseException:
            await anyio.to_thread.run_sync(self._forget, principal, key)
            raise
        if response["status"] >= 500:
            await anyio.to_thread.run_sync(self._forget, principal, key)
        else:
            content_type = next(
                (
                    value.decode("latin-1")
                    for name, value in response["headers"]
                    if name.lower() == b"content-type"
                ),
                "application/json",
            )
            await anyio.to_thread.run_sync(
                self._store,
                principal,
                key,
                response["status"],
                response["body"],
                content_type,
                response["headers"],
            )
        for message in held:
            await send(message)

    def _claim(self, principal: str, key: str, request_hash: str) -> tuple[bool, Any]:
        """Insert the key as in flight; return (True, None), or (False, the row already there)."""
        now = self.clock.now()
        keys = IDEMPOTENCY_KEYS.c
        with self.engine.begin() as connection:
            # Forgotten after a day: an old key may be used again.
            connection.execute(
                delete(IDEMPOTENCY_KEYS).where(
                    keys.principal == principal, keys.key == key, keys.created_at < now - KEEP
                )
            )
            inserted = connection.execute(
                insert_ignoring_duplicates(self.engine, IDEMPOTENCY_KEYS)
                .values(
                    principal=principal,
                    key=key,
                    request_hash=request_hash,
                    status="in_flight",
                    created_at=now,
                )
                .returning(keys.id)
            ).first()
            if inserted is not None:
                return True, None
            row = connection.execute(
                select(IDEMPOTENCY_KEYS).where(keys.principal == principal, keys.key == key)
            ).first()
        return False, row

    def _store(
        self, principal: str, key: str, status: int, body: bytes, content_type: str, headers: list[Any]
    ) -> None:
        keys = IDEMPOTENCY_KEYS.c
        # The ETag and Location of a created order are part of its response.
        kept = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name.lower() in (b"etag", b"location")
        }
        with self.engine.begin() as connection:
            connection.execute(
                update(IDEMPOTENCY_KEYS)
                .where(keys.principal == principal, keys.key == key)
                .values(
                    status="done",
                    response_code=status,
                    response_body=body,
                    response_headers=json.dumps({"content-type": content_type, **kept}),
                )
            )

    def _forget(self, principal: str, key: str) -> None:
        keys = IDEMPOTENCY_KEYS.c
        with self.engine.begin() as connection:
            connection.execute(delete(IDEMPOTENCY_KEYS).where(keys.principal == principal, keys.key == key))

    async def _answer_stored(self, send: Send, row: Any, request_hash: str) -> None:
        if row is None:  # forgotten between the insert and the read: rare, and safe to retry
            await _answer(
                send, 409, {"detail": "this Idempotency-Key was just released; send the request again"}
            )
        elif row.request_hash != request_hash:
            await _answer(
                send,
                422,
                {"detail": "this Idempotency-Key came with another request: a new request needs a new key"},
            )
        elif row.status != "done":
            await _answer(
                send,
                409,
                {"detail": "a request with this Idempotency-Key is still running: retry in a moment"},
            )
        else:
            stored = json.loads(row.response_headers or "{}")
            headers = [(name.encode(), str(value).encode()) for name, value in stored.items()]
            headers.append((b"idempotent-replayed", b"true"))
            body = bytes(row.response_body or b"")
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": int(row.response_code), "headers": headers})
            await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """Return the whole body, or None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def purge(engine: Engine, now: datetime) -> int:
    """Delete the keys older than :data:`KEEP` at ``now``; return how many."""
    with engine.begin() as connection:
        result = connection.execute(
            delete(IDEMPOTENCY_KEYS)
            .where(IDEMPOTENCY_KEYS.c.created_at < now - KEEP)
            .returning(IDEMPOTENCY_KEYS.c.id)
        )
        return len(result.all())
