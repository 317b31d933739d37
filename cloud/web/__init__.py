"""The web pages: the household's and the retailer's dashboards, their assets and live streams.

- ``pages.py``: the routes of the pages and of sign-in, rendered from ``templates/``;
- ``streams.py``: the server-sent events that keep an open page up to date;
- ``households.py``, ``retailers.py``: what each page shows (their view models);
- ``access.py``: who the sign-in cookie (or bearer header) says the caller is;
- ``transport.py``: HTTPS, the cookie's Secure flag, HSTS and the sign-in forms' same-origin check;
- ``static/``: the pages' stylesheet and script, served at ``/web/static``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud.web import pages, streams
from cloud.web.transport import StrictTransportSecurity

__all__ = ["install"]


def install(app: FastAPI, *, assume_https: bool = False) -> None:
    """Add the pages, their static files and their streams to ``app``, and HSTS to its HTTPS answers
    (every answer with ``assume_https``: a TLS-terminating proxy in front)."""
    # Set when the worker stops (cloud/service.py), so that open streams end and the server can shut down.
    app.state.web_closing = threading.Event()
    app.state.assume_https = assume_https
    app.state.web_streams = streams.StreamSlots()
    app.add_middleware(StrictTransportSecurity, assume_https=assume_https)
    app.mount("/web/static", StaticFiles(directory=Path(__file__).parent / "static"), name="web-static")
    app.include_router(pages.router)
    app.include_router(streams.router)
