"""What the browser tests measure of a page (the bytes it transferred, against issue 9's limit), and
signing in on the dashboard's form without a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from cloud.api.dependencies import WEB_COOKIE

if TYPE_CHECKING:
    from playwright.sync_api import Response

PAGE_LIMIT = 200_000


def transferred(responses: list[Response]) -> int:
    """Return the bytes of the responses' bodies, read before the page navigates away."""
    return sum(
        len(response.body())
        for response in responses
        # Redirects have no body; the live streams never end (they send a few bytes a minute).
        if not 300 <= response.status < 400
        and "text/event-stream" not in response.headers.get("content-type", "")
    )


def sign_in(base_url: str, secret: str, household: str | None = None) -> str:
    """Sign in on the dashboard's form as a browser would, and return the session cookie's value
    (the cookie holds a session id, never the token or key signed in with)."""
    form = {"token": secret, **({"household": household} if household is not None else {})}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        answer = client.post("/web/sign-in", data=form)
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    session_id = answer.cookies.get(WEB_COOKIE)
    assert session_id, answer.headers.get("set-cookie")
    return session_id
