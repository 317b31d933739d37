"""The web pages: the household's and the retailer's dashboards, their assets and live streams.

- ``pages.py``: the routes of the pages and of sign-in, rendered from ``templates/``;
- ``streams.py``: the server-sent events that keep an open page up to date;
- ``households.py``, ``retailers.py``: what each page shows (their view models);
- ``access.py``: who the sign-in cookie (or bearer header) says the caller is;
- ``static/``: the pages' stylesheet and script, served at ``/web/static``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cloud.web import pages, streams

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their streams to ``app``."""
    # Set when the worker stops (cloud/service.py), so that open streams end and the server can shut down.
    app.state.web_closing = threading.Event()
    app.mount("/web/static", StaticFiles(directory=Path(__file__).parent / "static"), name="web-static")
    app.include_router(pages.router)
    app.include_router(streams.router)
