"""Webhook deliveries to retailers: queued with the change they announce, sent and retried.

A change and its webhooks commit in one transaction (an outbox), so no announced change is lost
and none is announced that did not happen. Each delivery names the household and the order it
concerns, so an erasure finds them by equality (``cloud/commerce/privacy.py``).

:class:`WebhookSender` claims due deliveries and attempts them. An attempt has one deadline for
all of it (connecting, TLS, sending, the answer) and reads at most 64 KiB of the answer: a 2xx
status delivers it; 410 Gone disables the endpoint (the retailer removed it); anything else, no
answer, or no answer by the deadline, is tried again after a jittered exponential backoff (5 s,
30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then every 6 h), for up to 24 hours from the first
attempt, then marked failed. Each message keeps its ``webhook-id`` across attempts, so a receiver
can drop the duplicates a retry may cause. Every attempt's outcome stays in the delivery log
(``GET /retailer/webhooks/{id}/deliveries``). The worker attempts them in parallel, a few per
retailer at a time, on threads of their own (``cloud/outbox/lane.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import Connection, Engine, insert, or_, select, update

from cloud.db.engine import as_utc
from cloud.db.tables import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from cloud.errors import CloudError
from cloud.outbox import egress
from cloud.outbox.egress import EgressRefused, check_url
from cloud.outbox.signing import sign
from shared.clock import Clock

log = logging.getLogger(__name__)

DeliveryStatus = Literal["pending", "delivered", "failed"]

# Seconds before the attempt after the n-th failure; the last repeats until the day is over.
BACKOFF_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 21600)
JITTER = 0.2  # each wait is stretched or shrunk by up to a fifth, so retries do not march together
GIVE_UP_AFTER = timedelta(hours=24)
# One attempt's whole budget: connecting, TLS, sending the body and reading the answer. A receiver
# that stores the message and answers takes well under a second; 15 s leaves a slow one room, and
# bounds how long a thread of the webhook lane is held. A per-read timeout alone did not: a
# receiver answering a byte every 2 s held the sender 30 s with a 10 s timeout.
DEADLINE_S = 15.0
# Most of an answer's body read. The status is the answer; the body is read only so the connection
# can be kept alive, and an endless one costs no more memory than this.
MAX_ANSWER_BYTES = 64 * 1024
# Most deliveries one call of send_due attempts; the rest wait for the next call.
BATCH = 50
# How long a claimed delivery is kept from other workers: longer than an attempt can take (the
# deadline, the DNS look-ups before it and the database writes after it, with room to spare).
LEASE = timedelta(seconds=60)
# Deliveries send_due claims at once: three at their deadline (45 s) still end within the lease.
SERIAL_CLAIM = 3


class DeadlinePassed(CloudError, TimeoutError):
    """An attempt that had no complete answer by its deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within the {seconds:g} s deadline")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery one worker took, leased to it until the outcome of its attempt is recorded."""

    id: str
    endpoint_id: str
    retailer_id: str
    url: str
    secrets: tuple[str, ...]  # the endpoint's live secrets: two during a rotation
    payload: str
    attempts: int
    created_at: datetime
    endpoint_disabled: bool


def enqueue(
    connection: Connection,
    retailer_id: str,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
    *,
    household_id: str | None,
    order_id: str | None,
) -> int:
    """Queue one message for every live endpoint of the retailer, naming whom it concerns (for an
    erasure); return how many."""
    endpoints = connection.execute(
        select(WEBHOOK_ENDPOINTS.c.id).where(
            WEBHOOK_ENDPOINTS.c.retailer_id == retailer_id, WEBHOOK_ENDPOINTS.c.disabled_at.is_(None)
        )
    ).scalars()
    rows = []
    for endpoint in endpoints:
        message_id = "msg_" + uuid.uuid4().hex
        body = {"type": event_type, "timestamp": now.isoformat(), "data": data}
        rows.append(
            {
                "id": message_id,
                "endpoint_id": endpoint,
                "event_type": event_type,
                "household_id": household_id,
                "order_id": order_id,
                "payload": json.dumps(body, separators=(",", ":"), default=str),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    if rows:
        connection.execute(insert(WEBHOOK_DELIVERIES), rows)
    return len(rows)


def backoff(failures: int, rng: random.Random) -> timedelta:
    """Return the wait after ``failures`` failed attempts (1 or more), jittered."""
    base = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
    return timedelta(seconds=base * rng.uniform(1 - JITTER, 1 + JITTER))


class WebhookSender:
    """Claim due webhook deliveries, send them with a real HTTP client, and record each outcome.

    Thread-safe: the webhook lane attempts several deliveries at once through one sender.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        allow_private: bool = False,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._allow_private = allow_private
        self._client = client or egress.client(allow_private=allow_private, timeout=DEADLINE_S)
        self._rng = rng or random.Random()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def send_due(self, limit: int = BATCH) -> int:
        """Attempt up to ``limit`` deliveries due now, one after another in this thread; return how
        many were attempted. The worker sends through the webhook lane instead, in parallel."""
        attempted = 0
        gone: set[str] = set()  # endpoints that answered 410 Gone in this call
        while attempted < limit:
            claimed = self.claim(min(SERIAL_CLAIM, limit - attempted))
            if not claimed:
                break
            for delivery in claimed:
                attempted += 1
                if delivery.endpoint_id in gone:
                    continue  # failed already, with the rest of its endpoint's deliveries: not sent
                if self.attempt(delivery):
                    gone.add(delivery.endpoint_id)
        return attempted

    def claim(
        self,
        limit: int,
        *,
        per_retailer: int | None = None,
        busy: Mapping[str, int] | None = None,
        sending: Collection[str] = (),
    ) -> list[Claimed]:
        """Take up to ``limit`` due deliveries, oldest first, and lease them to this worker.

        With ``per_retailer``, take no more of one retailer than that, less what ``busy`` says this
        worker is already sending to it. Never the deliveries in ``sending`` (this worker's in
        flight): the lease runs on the injected clock, which a simulation moves by days while a
        delivery is on the wire, and the same message would go out twice.
        """
        if limit <= 0:
            return []
        now = self._clock.now()
        busy = busy or {}
        deliveries, endpoints = WEBHOOK_DELIVERIES.c, WEBHOOK_ENDPOINTS.c
        query = (
            select(
                deliveries.id,
                deliveries.endpoint_id,
                deliveries.payload,
                deliveries.attempts,
                deliveries.created_at,
                endpoints.retailer_id,
                endpoints.url,
                endpoints.secret,
                endpoints.previous_secret,
                endpoints.previous_until,
                endpoints.disabled_at,
            )
            .join(WEBHOOK_ENDPOINTS, endpoints.id == deliveries.endpoint_id)
            .where(deliveries.status == "pending", deliveries.next_attempt_at <= now)
            .order_by(deliveries.next_attempt_at)
            # With a cap per retailer, look further than the limit, so one retailer's backlog does
            # not hide everyone else's deliveries.
            .limit(limit if per_retailer is None else max(limit, BATCH))
            .with_for_update(skip_locked=True, of=WEBHOOK_DELIVERIES)
        )
        if sending:
            query = query.where(deliveries.id.not_in(list(sending)))
        if per_retailer is not None:
            full = [retailer for retailer, count in busy.items() if count >= per_retailer]
            if full:
                query = query.where(endpoints.retailer_id.not_in(full))
        with self._engine.begin() as connection:
            # Other workers skip the locked rows, and the lease keeps them off the claimed ones until
            # their attempt is recorded (or, if this worker dies, until the lease runs out).
            taken: Counter[str] = Counter()
            claimed: list[Claimed] = []
            for row in connection.execute(query).all():
                if len(claimed) == limit:
                    break
                to_retailer = busy.get(row.retailer_id, 0) + taken[row.retailer_id]
                if per_retailer is not None and to_retailer >= per_retailer:
                    continue
                taken[row.retailer_id] += 1
                claimed.append(_claimed(row, now))
            if claimed:
                connection.execute(
                    update(WEBHOOK_DELIVERIES)
                    .where(deliveries.id.in_([delivery.id for delivery in claimed]))
                    .values(next_attempt_at=now + LEASE)
                )
        return claimed

    def attempt(self, delivery: Claimed) -> bool:
        """Send one claimed delivery and record the outcome; return whether its endpoint answered
        410 Gone."""
        now = self._clock.now()
        if delivery.endpoint_disabled:
            self._finish(delivery.id, now, "failed", None, "the endpoint is disabled")
            return False
        body = delivery.payload.encode()
        headers = sign(delivery.secrets, delivery.id, int(now.timestamp()), body)
        headers["content-type"] = "application/json"
        try:
            check_url(delivery.url, allow_private=self._allow_private)
            status = self._post(delivery.url, body, headers)
        except (EgressRefused, DeadlinePassed) as exc:
            status, error = None, str(exc)
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = f"HTTP {status}"
        # The outcome's time: a retry waits its backoff from the end of this attempt, not its start.
        ended = self._clock.now()
        if status is not None and 200 <= status < 300:
            self._finish(delivery.id, ended, "delivered", status, None)
        elif status == 410:
            self._finish(delivery.id, ended, "failed", 410, "410 Gone: the endpoint is disabled")
            self._disable(delivery.endpoint_id, ended)
            return True
        else:
            self._retry_or_fail(delivery, ended, status, error)
        return False

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST within the deadline and return the answer's status; read at most MAX_ANSWER_BYTES."""
        with egress.deadline(DEADLINE_S) as limit:
            try:
                with self._client.stream("POST", url, content=body, headers=headers) as response:
                    # The status is the answer; a body cut short costs only the connection.
                    with contextlib.suppress(httpx.HTTPError):
                        _drain(response, MAX_ANSWER_BYTES)
                    return response.status_code
            except httpx.TimeoutException as exc:
                if limit.passed:
                    raise DeadlinePassed(DEADLINE_S) from exc
                raise

    def _disable(self, endpoint_id: str, now: datetime) -> None:
        """Disable an endpoint that answered 410 Gone, and fail what is still pending for it."""
        with self._engine.begin() as connection:
            connection.execute(
                update(WEBHOOK_ENDPOINTS)
                .where(WEBHOOK_ENDPOINTS.c.id == endpoint_id)
                .values(disabled_at=now, disabled_reason="the endpoint answered 410 Gone")
            )
            connection.execute(
                update(WEBHOOK_DELIVERIES)
                .where(
                    WEBHOOK_DELIVERIES.c.endpoint_id == endpoint_id,
                    WEBHOOK_DELIVERIES.c.status == "pending",
                )
                .values(
                    status="failed",
                    next_attempt_at=None,
                    last_error="the endpoint was disabled (410 Gone)",
                )
            )
        log.warning("webhook endpoint %s answered 410 Gone: disabled", endpoint_id)

    def _retry_or_fail(self, delivery: Claimed, now: datetime, code: int | None, error: str) -> None:
        failures = delivery.attempts + 1
        later = now + backoff(failures, self._rng)
        if later > as_utc(delivery.created_at) + GIVE_UP_AFTER:
            self._finish(delivery.id, now, "failed", code, f"gave up after {failures} attempts: {error}")
            return
        deliveries = WEBHOOK_DELIVERIES.c
        with self._engine.begin() as connection:
            # Only while still pending: a 410 from the same endpoint, answered to a delivery sent
            # alongside this one, has failed it, and that stands.
            connection.execute(
                update(WEBHOOK_DELIVERIES)
                .where(deliveries.id == delivery.id, deliveries.status == "pending")
                .values(
                    attempts=failures, next_attempt_at=later, last_status_code=code, last_error=error[:300]
                )
            )

    def _finish(
        self, delivery_id: str, now: datetime, status: str, code: int | None, error: str | None
    ) -> None:
        deliveries = WEBHOOK_DELIVERIES.c
        with self._engine.begin() as connection:
            connection.execute(
                update(WEBHOOK_DELIVERIES)
                .where(deliveries.id == delivery_id)
                .values(
                    status=status,
                    attempts=deliveries.attempts + 1,
                    next_attempt_at=None,
                    last_status_code=code,
                    last_error=None if error is None else error[:300],
                    delivered_at=now if status == "delivered" else None,
                )
            )


def _claimed(row: Any, now: datetime) -> Claimed:
    """Return a claimed row as a :class:`Claimed`, with the secrets that sign it now."""
    secrets = [row.secret]
    until = row.previous_until
    if row.previous_secret and until is not None and as_utc(until) > now:
        secrets.append(row.previous_secret)
    return Claimed(
        id=row.id,
        endpoint_id=row.endpoint_id,
        retailer_id=row.retailer_id,
        url=row.url,
        secrets=tuple(secrets),
        payload=row.payload,
        attempts=row.attempts,
        created_at=row.created_at,
        endpoint_disabled=row.disabled_at is not None,
    )


def _drain(response: httpx.Response, limit: int) -> int:
    """Read the answer's body as it comes, raw (a compressed one is not inflated), until its end or
    ``limit`` bytes; return how many were read."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= limit:
            break
    return read


def retry_now(connection: Connection, endpoint_id: str, now: datetime) -> int:
    """Make every pending or failed delivery of an endpoint due now, with a new 24 h window."""
    deliveries = WEBHOOK_DELIVERIES.c
    result = connection.execute(
        update(WEBHOOK_DELIVERIES)
        .where(
            deliveries.endpoint_id == endpoint_id,
            or_(deliveries.status == "pending", deliveries.status == "failed"),
        )
        .values(status="pending", next_attempt_at=now, created_at=now)
        .returning(deliveries.id)
    )
    return len(result.all())
