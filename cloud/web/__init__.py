"""The web pages: the household's and the retailer's dashboards, their assets and live streams."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.web import households

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their streams to ``app``."""
    households.register(app, app.state.clock)
