"""The pages' transport security: HTTPS detection, the sign-in cookie's Secure flag, HSTS, and the
same-origin check of the sign-in and sign-out forms.

A request counts as HTTPS when it arrived over TLS, when a trusted reverse proxy said so
(``X-Forwarded-Proto``, which uvicorn honours from the addresses in ``FORWARDED_ALLOW_IPS``: by
default 127.0.0.1 and ::1), or always when the worker runs with ``FRIGO_CLOUD_ASSUME_HTTPS=true`` (a
TLS-terminating proxy in front, whatever it sends). HTTPS responses carry HSTS. The sign-in cookie is
Secure unless the request is plain HTTP to a loopback address (a developer's own machine); plain HTTP
to any other address gets no sign-in at all (``insecure``), since the browser would drop a Secure
cookie sent over it, and the token would cross the network in clear.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.mqtt import is_loopback

# A year: what browsers' HSTS preload lists ask as a minimum, and long enough that a returning
# browser never tries plain HTTP first. No includeSubDomains: the cloud's host name may have
# siblings that serve plain HTTP, which are none of its business.
HSTS = "max-age=31536000"
# What Sec-Fetch-Site says of a form this site served (same-origin), or of a request the user made
# by hand, typing or bookmarking (none). Any other site, even a sibling (same-site), is refused.
OWN_SITE = frozenset({"same-origin", "none"})


def is_https(request: Request) -> bool:
    """Return whether the browser reached the worker over HTTPS (see the module's docstring)."""
    assume: bool = getattr(request.app.state, "assume_https", False)
    return assume or request.url.scheme == "https"


def insecure(request: Request) -> bool:
    """Return whether the request came over plain HTTP to an address other than loopback: no place
    for a sign-in."""
    return not is_https(request) and not is_loopback(request.url.hostname or "")


def cookie_secure(request: Request) -> bool:
    """Return whether the sign-in cookie gets the Secure flag: always, but over plain HTTP to a
    loopback address (a developer's own machine, where a browser may refuse a Secure cookie)."""
    return is_https(request) or not is_loopback(request.url.hostname or "")


def same_origin(request: Request) -> bool:
    """Return whether a form post came from this site's own pages (or from no browser at all).

    Browsers say where a request comes from in Sec-Fetch-Site (Chrome 76, Firefox 90, Safari 16.4
    on); older ones only in Origin, which must then name this host. A request with neither comes
    from no browser (curl, a script), where a forged cross-site post is not possible.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() in OWN_SITE
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and bool(host) and urlsplit(origin).netloc.lower() == host.lower()


class StrictTransportSecurity:
    """Add HSTS to every HTTPS response (an ASGI middleware: the API's answers get it too)."""

    def __init__(self, app: ASGIApp, *, assume_https: bool) -> None:
        self.app = app
        self.assume_https = assume_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.assume_https or scope.get("scheme") == "https"):
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_hsts)
