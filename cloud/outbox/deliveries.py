"""Webhook deliveries to retailers: queued with the change they announce, sent and retried.

A change and its webhooks commit in one transaction (an outbox), so no announced change is lost
and none is announced that did not happen. :class:`WebhookSender` sends what is due: a 2xx answer
delivers it; 410 Gone disables the endpoint (the retailer removed it); anything else, or no answer,
is tried again after a jittered exponential backoff (5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h,
4 h, then every 6 h), for up to 24 hours from the first attempt, then marked failed. Each message
keeps its ``webhook-id`` across attempts, so a receiver can drop the duplicates a retry may cause.
Every attempt's outcome stays in the delivery log (``GET /retailer/webhooks/{id}/deliveries``).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import Connection, Engine, insert, or_, select, update

from cloud.db.engine import as_utc
from cloud.db.tables import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
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
TIMEOUT_S = 10.0
# Most deliveries one pass sends; the rest wait for the next pass.
BATCH = 50
# How long a claimed delivery is kept from other workers: longer than an attempt can take.
LEASE = timedelta(seconds=60)


def enqueue(
    connection: Connection, retailer_id: str, event_type: str, data: dict[str, Any], now: datetime
) -> int:
    """Queue one message for every live endpoint of the retailer; return how many."""
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
    """Send due webhook deliveries with a real HTTP client, and record each outcome."""

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
        self._client = client or egress.client(allow_private=allow_private, timeout=TIMEOUT_S)
        self._rng = rng or random.Random()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def send_due(self) -> int:
        """Attempt every delivery that is due now; return how many were attempted."""
        now = self._clock.now()
        deliveries = WEBHOOK_DELIVERIES.c
        with self._engine.begin() as connection:
            # Claim the batch: other workers skip locked rows, and the lease keeps them off it
            # until this attempt is recorded (or, if this worker dies, until the lease runs out).
            due = connection.execute(
                select(WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS)
                .join(WEBHOOK_ENDPOINTS, WEBHOOK_ENDPOINTS.c.id == deliveries.endpoint_id)
                .where(deliveries.status == "pending", deliveries.next_attempt_at <= now)
                .order_by(deliveries.next_attempt_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=WEBHOOK_DELIVERIES)
            ).all()
            if due:
                connection.execute(
                    update(WEBHOOK_DELIVERIES)
                    .where(deliveries.id.in_([row.id for row in due]))
                    .values(next_attempt_at=now + LEASE)
                )
        gone: set[str] = set()  # endpoints that answered 410 Gone in this pass
        for row in due:
            if row.endpoint_id in gone:
                continue  # failed already, with the rest of its endpoint's deliveries: not sent
            if self._attempt(row, now):
                gone.add(row.endpoint_id)
        return len(due)

    def _attempt(self, row: Any, now: datetime) -> bool:
        """Send one delivery and record the outcome; return whether its endpoint answered 410 Gone."""
        endpoint = row._mapping
        if endpoint["disabled_at"] is not None:
            self._finish(row.id, now, "failed", None, "the endpoint is disabled")
            return False
        secrets = [endpoint["secret"]]
        until = endpoint["previous_until"]
        if endpoint["previous_secret"] and until is not None and as_utc(until) > now:
            secrets.append(endpoint["previous_secret"])
        body = row.payload.encode()
        headers = sign(secrets, row.id, int(now.timestamp()), body)
        headers["content-type"] = "application/json"
        try:
            check_url(endpoint["url"], allow_private=self._allow_private)
            response = self._client.post(endpoint["url"], content=body, headers=headers)
        except EgressRefused as exc:
            self._retry_or_fail(row, now, None, str(exc))
            return False
        except httpx.HTTPError as exc:
            self._retry_or_fail(row, now, None, f"{type(exc).__name__}: {exc}"[:300])
            return False
        if 200 <= response.status_code < 300:
            self._finish(row.id, now, "delivered", response.status_code, None)
        elif response.status_code == 410:
            self._finish(row.id, now, "failed", 410, "410 Gone: the endpoint is disabled")
            with self._engine.begin() as connection:
                connection.execute(
                    update(WEBHOOK_ENDPOINTS)
                    .where(WEBHOOK_ENDPOINTS.c.id == row.endpoint_id)
                    .values(disabled_at=now, disabled_reason="the endpoint answered 410 Gone")
                )
                # Nothing more goes to a disabled endpoint.
                connection.execute(
                    update(WEBHOOK_DELIVERIES)
                    .where(
                        WEBHOOK_DELIVERIES.c.endpoint_id == row.endpoint_id,
                        WEBHOOK_DELIVERIES.c.status == "pending",
                    )
                    .values(
                        status="failed",
                        next_attempt_at=None,
                        last_error="the endpoint was disabled (410 Gone)",
                    )
                )
            log.warning("webhook endpoint %s answered 410 Gone: disabled", row.endpoint_id)
            return True
        else:
            self._retry_or_fail(row, now, response.status_code, f"HTTP {response.status_code}")
        return False

    def _retry_or_fail(self, row: Any, now: datetime, code: int | None, error: str) -> None:
        failures = row.attempts + 1
        later = now + backoff(failures, self._rng)
        if later > as_utc(row.created_at) + GIVE_UP_AFTER:
            self._finish(row.id, now, "failed", code, f"gave up after {failures} attempts: {error}"[:300])
            return
        with self._engine.begin() as connection:
            connection.execute(
                update(WEBHOOK_DELIVERIES)
                .where(WEBHOOK_DELIVERIES.c.id == row.id)
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
                    last_error=error,
                    delivered_at=now if status == "delivered" else None,
                )
            )


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
