"""The API's documentation pages: /docs (Swagger UI) and /redoc (ReDoc) load nothing but files the
worker serves itself, under a Content-Security-Policy without inline scripts; in a real browser
both render the API (OpenAPI 3.1) from the worker alone, nothing fetched from elsewhere."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from cloud.service import CloudService
from tests.support.cloud import cloud_worker
from tests.support.services import require_chromium

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Request

PAGES = ("/docs", "/redoc")


class Assets(HTMLParser):
    """Every URL a page loads (scripts, stylesheets, icons, images, frames) and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href", "data", "spec-url"):
            value = found.get(name)
            if value and not (tag == "a" and name == "href"):
                self.urls.append(value)
        self._in_script = tag == "script" and "src" not in found

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def assets_of(html: str) -> Assets:
    parser = Assets()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudService]:
    folder = tmp_path_factory.mktemp("docs")
    with cloud_worker(f"sqlite:///{folder / 'cloud.db'}", None, "docs") as service:
        yield service


@pytest.mark.parametrize("path", PAGES)
def test_the_docs_load_only_same_origin_files_and_every_one_is_served(cloud: CloudService, path: str) -> None:
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        found = assets_of(page.text)
        assert found.urls, "the page loads its script"
        assert found.inline_scripts == []
        for url in found.urls:
            absolute = urljoin(str(page.url), url)
            assert urlsplit(absolute).netloc == urlsplit(cloud.url).netloc, url  # no CDN
            asset = client.get(absolute)
            assert asset.status_code == 200, url
            assert len(asset.content) > 0, url
        scripts = [url for url in found.urls if url.endswith(".js")]
        assert scripts
        for url in scripts:
            assert "javascript" in client.get(url).headers["content-type"]
        # The policy lets no script in but the worker's own files.
        policy = dict(
            part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
        )
        assert policy["script-src"] == "'self'"
        assert policy["default-src"] == "'self'"
        assert "http" not in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"


def test_fastapis_cdn_pages_are_gone_and_the_spec_is_still_public(cloud: CloudService) -> None:
    with httpx.Client(base_url=cloud.url, timeout=10) as client:
        for path in PAGES:
            assert "cdn.jsdelivr.net" not in client.get(path).text
            assert "fonts.googleapis.com" not in client.get(path).text
        spec = client.get("/openapi.json")
        assert spec.status_code == 200
        assert spec.json()["openapi"].startswith("3.1")
        # The pages are not in the spec they show.
        assert not set(spec.json()["paths"]) & {*PAGES, "/docs/oauth2-redirect"}


def test_the_assets_ship_in_the_package() -> None:
    # pyproject.toml's package-data must carry the start-up script, or an installed wheel's /docs
    # is blank (tests/frigo/test_packaging.py installs one and loads it).
    import cloud.api.docs

    ours = Path(cloud.api.docs.__file__).parent / "static" / "swagger-start.js"
    assert ours.is_file()
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "static/*.js" in project["tool"]["setuptools"]["package-data"]["cloud.api"]
    # The package with Swagger UI's and ReDoc's files is the cloud's, not only the dev's.
    assert any(d.startswith("fastapi-offline") for d in project["project"]["optional-dependencies"]["cloud"])


# ReDoc's sidebar shows Redocly's logo from Redocly's CDN; the policy refuses it and ReDoc then
# leaves the image out (its onError). The only address elsewhere either page asks for.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.chromium
@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_the_docs_render_in_a_browser_from_the_worker_alone(
    cloud: CloudService, path: str, rendered: str
) -> None:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    elsewhere: dict[str, str | None] = {}
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )
        try:
            page = browser.new_page(base_url=cloud.url)

            def seen(request: Request) -> None:
                if not request.url.startswith((cloud.url, "data:", "blob:")):
                    elsewhere[request.url] = None

            def failed(request: Request) -> None:
                if request.url in elsewhere:
                    elsewhere[request.url] = request.failure

            def console(message: ConsoleMessage) -> None:
                if "Content Security Policy" in message.text:
                    refused.append(message.text)

            page.on("request", seen)
            page.on("requestfailed", failed)
            page.on("console", console)
            page.goto(path)
            page.locator(rendered).first.wait_for(timeout=20_000)
            # The spec's operations are there: OpenAPI 3.1, which Swagger UI 4 would refuse to show.
            assert "/households/{household_id}/inventory" in page.content()
            page.wait_for_load_state("networkidle")
        finally:
            browser.close()
    # Nothing was fetched from elsewhere: at most Redocly's logo was asked for, and the policy
    # refused it before it left the browser.
    assert set(elsewhere) <= {REDOCLY_LOGO}
    assert all(failure == "csp" for failure in elsewhere.values()), elsewhere
    assert all(any(url in text for url in elsewhere) for text in refused), refused
