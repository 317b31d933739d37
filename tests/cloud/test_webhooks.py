"""Webhook signatures as Standard Webhooks has them: the spec's vector, forgeries, replays, rotation."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from cloud.outbox.signing import TOLERANCE_S, WebhookVerificationError, new_secret, sign, signature, verify

BODY = b'{"type": "order.created", "data": {"order_id": "ord_1"}}'
NOW = 1_764_500_000


def test_the_specs_own_example_signs_the_same() -> None:
    # From the Standard Webhooks specification's README.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_signed_message_verifies() -> None:
    secret = new_secret()
    headers = sign([secret], "msg_1", NOW, BODY)
    verify([secret], headers, BODY, NOW + 10)


def test_a_wrong_secret_is_refused() -> None:
    headers = sign([new_secret()], "msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify([new_secret()], headers, BODY, NOW)


def test_a_body_changed_by_one_byte_is_refused() -> None:
    secret = new_secret()
    headers = sign([secret], "msg_1", NOW, BODY)
    changed = bytearray(BODY)
    changed[-3] ^= 0x01
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify([secret], headers, bytes(changed), NOW)


@pytest.mark.parametrize("offset", [TOLERANCE_S + 1, -(TOLERANCE_S + 1)])
def test_a_timestamp_more_than_five_minutes_away_is_refused(offset: int) -> None:
    secret = new_secret()
    headers = sign([secret], "msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="timestamp"):
        verify([secret], headers, BODY, NOW + offset)
    verify([secret], headers, BODY, NOW + (TOLERANCE_S if offset > 0 else -TOLERANCE_S))


def test_during_rotation_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    headers = sign([old, new], "msg_1", NOW, BODY)
    assert len(headers["webhook-signature"].split()) == 2
    verify([old], headers, BODY, NOW)  # a receiver not yet updated
    verify([new], headers, BODY, NOW)  # a receiver already on the new secret
    with pytest.raises(WebhookVerificationError):
        verify([new_secret()], headers, BODY, NOW)


def test_missing_headers_and_bad_secrets_are_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="missing or malformed"):
        verify([new_secret()], {"webhook-id": "msg_1"}, BODY, NOW)
    with pytest.raises(ValueError, match="whsec_"):
        sign(["not-a-secret"], "msg_1", NOW, BODY)
    with pytest.raises(ValueError, match="needs a secret"):
        sign([], "msg_1", NOW, BODY)
    secret = new_secret()
    assert len(secret) > len("whsec_") + 40  # 32 random bytes
    assert secret != new_secret()


def test_the_snippet_in_the_retailers_guide_verifies_what_frigo_signs() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "RETAILERS.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", guide, re.DOTALL)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)  # the retailers' own copy of the check
    secret, body = new_secret(), b'{"type": "order.created"}'
    headers = sign([secret], "msg_1", int(time.time()), body)

    namespace["verify"](secret, headers, body)
    with pytest.raises(ValueError, match="signature"):
        namespace["verify"](secret, headers, body + b" ")
