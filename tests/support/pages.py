"""What the browser tests measure of a page: the bytes it transferred, against issue 9's limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
