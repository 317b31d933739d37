"""The API's documentation pages, served from installed files only: ``/docs`` (Swagger UI) and
``/redoc`` (ReDoc), both reading ``/openapi.json``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and ReDoc's fonts from Google): blank on
a network without the internet, and refused by a strict Content-Security-Policy. Here the scripts
and stylesheets come from the ``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1 as
FastAPI writes it; PyPI's ``swagger-ui-bundle`` ships Swagger UI 4, which cannot), and each page's
start-up is a file of ours in ``static/``, so the pages need no inline script. The pages and their
assets are public, like the spec they show: they carry no data.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "install"]

# Where the pages' assets are served: our start-up scripts, then fastapi-offline's files.
ASSETS = "/docs/static"
# Scripts only from this origin and never inline. Inline styles are allowed: Swagger UI (React's
# style attributes) and ReDoc (styled-components' <style> elements) set them, and a style runs no
# code. ReDoc runs its search in a worker it makes from a blob: URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Swagger UI</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-start.js"></script>
</body>
</html>
"""
# ReDoc starts by itself on a <redoc> element when its script loads.
REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – ReDoc</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets on ``app`` (made with ``docs_url=None,
    redoc_url=None``, so that FastAPI's CDN pages are not there)."""
    assert app.docs_url is None, "FastAPI's own /docs loads Swagger UI from a CDN"
    assert app.redoc_url is None, "FastAPI's own /redoc loads ReDoc from a CDN"
    fields = {"title": escape(app.title), "assets": ASSETS, "openapi": escape(app.openapi_url or "")}
    swagger, redoc = SWAGGER_PAGE.format(**fields), REDOC_PAGE.format(**fields)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers=HEADERS)

    @app.get("/redoc", include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers=HEADERS)

    # Our files first (the start-up scripts), then Swagger UI's and ReDoc's from the package.
    statics = StaticFiles(
        directory=Path(__file__).parent / "static", packages=[("fastapi_offline", "static")]
    )
    app.mount(ASSETS, statics, name="docs-static")
