"""Signing webhooks to retailers, and verifying them, as the Standard Webhooks spec does.

A webhook carries three headers: ``webhook-id`` (the message's id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` under each of the endpoint's live secrets.
While a secret is rotated the endpoint has two, so the message carries two signatures and a
receiver holding either secret accepts it. A secret is ``whsec_`` and the base64 of 32 random
bytes, one per endpoint.

:func:`verify` is what a retailer runs (docs/RETAILERS.md has the same dozen lines to copy): it
refuses a message whose timestamp is more than five minutes from its clock (a replay), and one
that no signature of a secret it holds matches (a forgery, or a body changed on the way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence

from cloud.errors import CloudError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Messages older or newer than this are refused: a replay window of five minutes, as the spec says.
TOLERANCE_S = 300


class WebhookVerificationError(CloudError, ValueError):
    """A webhook that must not be trusted; the message says which check failed."""


def new_secret() -> str:
    """Return a new endpoint secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,...`` signature of one message under one secret."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secrets_: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the headers of one delivery attempt, signed under every live secret of the endpoint."""
    if not secrets_:
        raise ValueError("an endpoint needs a secret to sign with")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
    }


def verify(
    secrets_: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    *,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Check a received webhook against the secrets the receiver holds; raise if it fails."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError(
            "missing or malformed webhook-id, webhook-timestamp or webhook-signature header"
        ) from None
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"timestamp {timestamp} is {abs(now - timestamp)} s from now (at most {tolerance_s} s)"
        )
    expected = {signature(secret, message_id, timestamp, body) for secret in secrets_}
    if not any(hmac.compare_digest(given, wanted) for given in signatures for wanted in expected):
        raise WebhookVerificationError("no signature matches: a wrong secret, or a body changed on the way")
