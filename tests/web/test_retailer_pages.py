"""The retailer's page in a real browser (Debian's Chromium through Playwright) against a real cloud
worker: sign in with the retailer's key, move an order from the queue (checked through the API),
new orders and moves show without a reload, stop a campaign, disable, enable and rotate a webhook
endpoint (each checked through the API), another retailer sees none of it, household tokens and
retailer keys open only their own pages, the campaign chart withholds a small arm (and its stream
never tells when one of its households joins or answers), the page and its stream carry no number
the page does not show (their marks are digests), and the page stays small.
docs/screenshots/retailer.png comes from here.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import insert, select
from sqlmodel import Session

from cloud.api.dependencies import WEB_COOKIE
from cloud.commerce import campaigns, consents, orders
from cloud.commerce.catalog import upsert_catalog
from cloud.db.tables import (
    CAMPAIGN_ASSIGNMENTS,
    CAMPAIGNS,
    CONSENTS,
    HOUSEHOLDS,
    OFFERS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
)
from cloud.identity.retailers import create_retailer
from cloud.identity.tokens import issue_token
from cloud.service import CloudService
from cloud.web.retailers import marks
from shared import topics
from shared.gtin import make_gtin13
from shared.messages import ItemAdded, encode
from tests.support.cloud import cloud_worker
from tests.support.pages import PAGE_LIMIT, sign_in, transferred
from tests.support.services import require_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Dialog, Response

pytestmark = [pytest.mark.chromium]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHOCOLATE, MILK, BREAD, TEA = (make_gtin13(f"40055566600{i}") for i in range(4))
# Households per campaign arm, and how many of them bought the chocolate: B is too small to show.
ARMS = {campaigns.CONTROL: (24, 3), "A": (30, 9), "B": (6, 2)}


@dataclass
class Site:
    cloud: CloudService
    browser: Browser
    shop: str
    key: str
    other_key: str
    household: str
    household_token: str
    created: str  # an order of the shop's still to accept
    shop_orders: list[str]
    other_order: str

    def signed_in(self, key: str) -> BrowserContext:
        """Return a browser context signed in through the form."""
        context = self.browser.new_context(base_url=self.cloud.url, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto("/web/sign-in")
        page.get_by_label("Token").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/web/retailer")
        page.close()
        return context


def item(gtin: str, name: str, price: float, category: str, available: bool = True) -> dict[str, object]:
    return {
        "gtin": gtin,
        "name": name,
        "price": price,
        "currency": "EUR",
        "pack_size": 1,
        "unit": "unit",
        "category": category,
        "available": available,
    }


def seed(cloud: CloudService, browser: Browser) -> Site:
    """Two retailers; the first with a catalog, orders, a webhook log and a campaign."""
    now = datetime.now(UTC)
    suffix = uuid.uuid4().hex[:6]
    with Session(cloud.engine) as session:
        shop, key = create_retailer(session, f"Corner Shop {suffix}", now)
        other, other_key = create_retailer(session, f"Green Grocer {suffix}", now)
        session.commit()
        shop_id, other_id = shop.id, other.id
    households = [f"hh-web-{i}-{suffix}" for i in range(3)]
    endpoint = str(uuid.uuid4())
    with cloud.engine.begin() as connection:
        upsert_catalog(
            connection,
            shop_id,
            [
                item(CHOCOLATE, "Dark chocolate", 2.5, "sweets"),
                item(MILK, "Milk 1 l", 1.1, "dairy"),
                item(BREAD, "Sourdough loaf", 3.9, "bakery"),
                item(TEA, "Green tea", 4.2, "drinks", available=False),
            ],
            now,
        )
        upsert_catalog(connection, other_id, [item(MILK, "Organic milk", 1.6, "dairy")], now)
        connection.execute(
            insert(WEBHOOK_ENDPOINTS).values(
                id=endpoint,
                retailer_id=shop_id,
                url="https://hooks.example/frigo",
                secret="s",
                created_at=now,
            )
        )
        for index, household in enumerate(households):
            retailer = other_id if index == 2 else shop_id
            connection.execute(
                insert(HOUSEHOLDS).values(id=household, name=household, created_at=now, retailer_id=retailer)
            )
            consents.grant(connection, household, retailer, "ordering", now)
        placed = []
        for minutes, (household, wanted) in enumerate(
            [
                (households[0], [orders.Wanted(MILK, 2), orders.Wanted(BREAD, 1)]),
                (households[1], [orders.Wanted(CHOCOLATE, 3)]),
                (households[0], [orders.Wanted(BREAD, 1)]),
            ]
        ):
            placed.append(
                orders.create_order(connection, household, wanted, now + timedelta(minutes=minutes))
            )
        orders.retailer_event(connection, shop_id, placed[2], "accepted", now + timedelta(minutes=5))
        other_order = orders.create_order(connection, households[2], [orders.Wanted(MILK, 1)], now)
        # The dispatcher sends these in the background; pin one answer for the screenshot.
        connection.execute(
            WEBHOOK_DELIVERIES.update()
            .where(WEBHOOK_DELIVERIES.c.endpoint_id == endpoint)
            .values(status="delivered", attempts=1, last_status_code=204, next_attempt_at=None)
        )
        campaign = campaigns.create(
            connection,
            shop_id,
            "Chocolate week",
            CHOCOLATE,
            [campaigns.Variant("A", "Try our chocolate", 0), campaigns.Variant("B", "Treat yourself", 20)],
            now - timedelta(days=5),
            now + timedelta(days=25),
            budget=500,
            holdout_share=0.2,
            min_sample=20,
            now=now,
        )
    # Households in each arm, as tests/cloud/test_campaigns.py makes them: one event each, the
    # converters' a chocolate bought after joining.
    messages, assignments = [], []
    for arm, (n, converted) in ARMS.items():
        for i in range(n):
            device = f"{arm.lower()}-{i}-{suffix}"
            event = ItemAdded(
                event_id=uuid.uuid4(),
                device_id=device,
                seq=1,
                lot_id=1,
                occurred_at=now - timedelta(days=1),
                code=CHOCOLATE if i < converted else MILK,
                quantity=1,
            )
            messages.append((topics.events(device), encode(event)))
            assignments.append(
                {
                    "campaign_id": campaign,
                    "household_id": f"hh-{device}",
                    "arm": arm,
                    "assigned_at": now - timedelta(days=3),
                }
            )
    cloud.ingestor.process(messages)
    with cloud.engine.begin() as connection:
        connection.execute(insert(CAMPAIGN_ASSIGNMENTS), assignments)
        # Conversion counts the households that allow the shop analytics (cloud/commerce/campaigns.py).
        for assignment in assignments:
            consents.grant(connection, str(assignment["household_id"]), shop_id, "analytics", now)
    with Session(cloud.engine) as session:
        household_token = issue_token(session, "household", households[0], now)
        session.commit()
    return Site(
        cloud,
        browser,
        shop=shop_id,
        key=key,
        other_key=other_key,
        household=households[0],
        household_token=household_token,
        created=placed[0],
        shop_orders=placed,
        other_order=other_order,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    directory = tmp_path_factory.mktemp("retailer-web")
    with cloud_worker(f"sqlite:///{directory / 'cloud.db'}", None, "retailer-web") as cloud:
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path=chromium)
            try:
                yield seed(cloud, browser)
            finally:
                browser.close()
        finally:
            playwright.stop()


def test_the_page_is_small_and_a_screenshot_is_saved(site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = site.signed_in(site.key)
    page = context.new_page()
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    page.goto("/web/retailer", wait_until="networkidle")
    size = transferred(responses)
    assert 0 < size < PAGE_LIMIT, size
    # Every request went to the cloud itself: no CDN.
    assert all(response.url.startswith(site.cloud.url) for response in responses)
    page.screenshot(path=str(SCREENSHOTS / "retailer.png"), full_page=True)
    context.close()
    assert (SCREENSHOTS / "retailer.png").stat().st_size > 10_000


def test_an_order_accepted_from_the_queue_is_accepted_in_the_api(site: Site) -> None:
    context = site.signed_in(site.key)
    page = context.new_page()
    page.goto("/web/retailer")
    row = page.locator(f'tr[data-order="{site.created}"]')
    # Only the moves the order's status allows: from created, accept, reject or cancel.
    assert sorted(row.get_by_role("button").all_inner_texts()) == ["Accept", "Cancel", "Reject"]
    row.get_by_role("button", name="Accept").click()
    page.get_by_role("status").filter(has_text=f"Order {site.created[:8]}: accepted").wait_for()
    # The queue was reloaded: the order now offers the moves from accepted.
    moved = page.locator(f'table[data-status="accepted"] tr[data-order="{site.created}"]')
    moved.get_by_role("button", name="Start picking").wait_for()
    assert sorted(moved.get_by_role("button").all_inner_texts()) == ["Cancel", "Start picking"]
    context.close()
    headers = {"Authorization": f"Bearer {site.key}"}
    with httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api:
        answer = api.get(f"/retailer/orders/{site.created}")
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    assert answer.json()["version"] == 2
    assert answer.headers["etag"] == '"2"'


def test_the_buttons_can_be_reached_from_the_keyboard(site: Site) -> None:
    context = site.signed_in(site.key)
    page = context.new_page()
    page.goto("/web")
    assert page.url.endswith("/web/retailer")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#orders button[data-url]')"):
            break
    else:
        pytest.fail("no order button can be reached with Tab")
    context.close()


def test_another_retailer_sees_none_of_the_orders(site: Site) -> None:
    context = site.signed_in(site.other_key)
    page = context.new_page()
    page.goto("/web/retailer")
    html = page.content()
    assert site.other_order in html
    for order in site.shop_orders:
        assert order not in html
        assert order[:8] not in html
    for secret in ("Dark chocolate", "Chocolate week", "hooks.example", site.household):
        assert secret not in html
    # Its key in the cookie moves none of them either.
    answer = context.request.post(
        f"/retailer/orders/{site.shop_orders[1]}/events",
        data={"type": "rejected"},
        headers={"X-Frigo-Web": "1"},
    )
    assert answer.status == 404
    context.close()


def test_household_tokens_and_retailer_keys_open_only_their_own_pages(site: Site) -> None:
    household = site.browser.new_context(base_url=site.cloud.url)
    page = household.new_page()
    page.goto("/web/sign-in")
    page.get_by_label("Token").fill(site.household_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/web/households/{site.household}")
    response = page.goto("/web/retailer")
    assert response is not None
    assert response.status == 403
    assert "Dark chocolate" not in page.content()
    assert household.request.get("/retailer/orders").status == 401
    household.close()

    retailer = site.signed_in(site.key)
    page = retailer.new_page()
    for path in (f"/web/households/{site.household}", f"/web/households/{site.household}/inventory"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403, path
    assert retailer.request.get(f"/households/{site.household}/inventory").status == 401
    retailer.close()

    # The cookie stands for the key only when no Authorization header came, and a change needs the
    # dashboard's header; without a cookie the page sends to the sign-in form.
    session = {WEB_COOKIE: sign_in(site.cloud.url, site.key)}
    with httpx.Client(base_url=site.cloud.url, timeout=10, cookies=session) as raw:
        assert raw.get("/retailer/orders").status_code == 200
        assert raw.get("/retailer/orders", headers={"Authorization": "Bearer frk_wrong"}).status_code == 401
        event = {"type": "cancelled"}
        assert raw.post(f"/retailer/orders/{site.shop_orders[1]}/events", json=event).status_code == 401
    with httpx.Client(base_url=site.cloud.url, timeout=10) as anonymous:
        assert anonymous.get("/web/retailer").headers["location"] == "/web/sign-in"


def test_campaign_results_chart_withholds_the_small_arm(site: Site) -> None:
    context = site.signed_in(site.key)
    page = context.new_page()
    page.goto("/web/retailer")
    campaign = page.locator("article.campaign").filter(has_text="Chocolate week")
    chart = campaign.locator("svg.ab")
    assert chart.get_attribute("role") == "img"
    for arm in ("control", "A"):
        row = chart.locator(f'g[data-arm="{arm}"]')
        assert row.locator("rect.interval").count() == 1
        assert row.locator("rect.point").count() == 1
    withheld = chart.locator('g[data-arm="B"]')
    assert withheld.locator("rect").count() == 0
    assert "withheld: fewer than 20 households" in (withheld.text_content() or "")
    table = campaign.locator("table")
    # A: 9 of 30 converted; 30 % with its Wilson interval.
    assert "30.0 % (16.7–47.9)" in table.locator('tr[data-arm="A"]').inner_text()
    assert "withheld: fewer than 20 households" in table.locator('tr[data-arm="B"]').inner_text()
    assert "no winner yet" in campaign.locator(".verdict").inner_text()
    context.close()


def test_a_new_order_shows_in_the_open_queue_without_a_reload(site: Site) -> None:
    context = site.signed_in(site.key)
    page = context.new_page()
    page.goto("/web/retailer")
    page.evaluate("window.notReloaded = true")
    page.wait_for_timeout(300)  # the event stream is open
    with site.cloud.engine.begin() as connection:
        placed = orders.create_order(
            connection, site.household, [orders.Wanted(CHOCOLATE, 2)], datetime.now(UTC)
        )
    started = time.monotonic()
    row = page.locator(f'table[data-status="created"] tr[data-order="{placed}"]')
    row.wait_for(timeout=5000)
    # The stream looks once a second; the section is fetched again after that.
    assert time.monotonic() - started < 3.0
    assert sorted(row.get_by_role("button").all_inner_texts()) == ["Accept", "Cancel", "Reject"]
    # A move made elsewhere (the retailer's own system, through the API) shows too.
    headers = {"Authorization": f"Bearer {site.key}", "If-Match": '"1"'}
    with httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api:
        moved = api.post(f"/retailer/orders/{placed}/events", json={"type": "rejected"})
    assert moved.status_code == 200, moved.text
    page.locator(f'table[data-status="rejected"] tr[data-order="{placed}"]').wait_for(timeout=5000)
    assert page.evaluate("window.notReloaded") is True
    context.close()


# Attributes that lay out or draw what the page shows, never data: table spans, focus order, the
# chart's geometry (its bars are the table's rates and intervals), and a <time>'s machine-readable
# form of the date it shows.
LAYOUT = {
    "colspan",
    "rowspan",
    "tabindex",
    "x",
    "y",
    "x1",
    "x2",
    "y1",
    "y2",
    "width",
    "height",
    "rx",
    "viewbox",
}
NUMBER = re.compile(r"\d+(?:\.\d+)?")
DIGEST = re.compile(r"[0-9a-f]{16}")


class Figures(HTMLParser):
    """The numbers of a page's visible text and those in its body's attributes (by attribute)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.marks: list[str] = []
        self._skip = 0
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_body = self._in_body or tag == "body"
        self._skip += tag in ("script", "style")
        for name, value in attrs:
            if name == "data-marks":
                self.marks.append(value or "")
            elif (
                self._in_body and value and name not in LAYOUT and not (tag == "time" and name == "datetime")
            ):
                self.attributes.append((tag, name, value))

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def numbers_in(value: str) -> list[str]:
    """Return the numbers standing alone in a value: a token of digits, not part of an id (a UUID's
    digits, a GTIN in a URL are parts of names, and names are checked by the tests above)."""
    return [token for token in re.split(r"[^\w.-]+", value) if NUMBER.fullmatch(token)]


def shown(number: str, visible: set[str]) -> bool:
    return number in visible or any(float(number) == float(v) for v in visible)


def assert_opaque(marks_text: str) -> None:
    """Check a page's (or event id's) marks: one per section, each a digest and never a count."""
    found = dict(part.split("=", 1) for part in marks_text.split("~"))
    assert set(found) == {"orders", "webhooks", "campaigns"}, marks_text
    for section, mark in found.items():
        assert DIGEST.fullmatch(mark), (section, mark)


def test_the_page_and_its_stream_carry_no_number_the_page_does_not_show(site: Site) -> None:
    context = site.signed_in(site.key)
    html = context.request.get("/web/retailer").text()  # as the server sent it, before any script
    context.close()
    page = Figures()
    page.feed(html)
    visible = set(NUMBER.findall(" ".join(page.text)))
    hidden = [
        (tag, name, value, number)
        for tag, name, value in page.attributes
        for number in numbers_in(value)
        if not shown(number, visible)
    ]
    assert hidden == []
    assert any(numbers_in(value) for _tag, _name, value in page.attributes)  # orders' versions, say
    (marks_text,) = page.marks
    assert_opaque(marks_text)
    # The stream: every field of its first messages (the first names every section as changed).
    headers = {"Authorization": f"Bearer {site.key}"}
    fields: list[tuple[str, str]] = []
    with (
        httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api,
        api.stream("GET", "/retailer/stream") as stream,
    ):
        for line in stream.iter_lines():
            name, _, value = line.partition(": ")
            fields.append((name, value))
            if name == "data":
                break
    by_name = dict(fields)
    assert by_name["event"] == "changed"
    assert_opaque(by_name["id"])
    assert json.loads(by_name["data"]) == {"sections": ["campaigns", "orders", "webhooks"]}
    # Beyond those, only the protocol's reconnect delay.
    assert {name for name, _ in fields} <= {"retry", "event", "id", "data", ""}


def test_a_withheld_arm_moves_no_mark_and_a_shown_one_does(site: Site) -> None:
    now = datetime.now(UTC)
    with site.cloud.engine.connect() as connection:
        campaign = connection.execute(
            select(CAMPAIGNS.c.id).where(
                CAMPAIGNS.c.retailer_id == site.shop, CAMPAIGNS.c.name == "Chocolate week"
            )
        ).scalar_one()
        consent = connection.execute(select(CONSENTS.c.id).limit(1)).scalar_one()

    def mark() -> str:
        with site.cloud.engine.connect() as connection:
            return marks(connection, site.shop)["campaigns"]

    def joins(arm: str) -> str:
        household = f"hh-late-{arm}-{uuid.uuid4().hex[:6]}"
        with site.cloud.engine.begin() as connection:
            connection.execute(insert(HOUSEHOLDS).values(id=household, name=household, created_at=now))
            connection.execute(
                insert(CAMPAIGN_ASSIGNMENTS).values(
                    campaign_id=campaign, household_id=household, arm=arm, assigned_at=now
                )
            )
        return household

    before = mark()
    # B has fewer than 20 households: one more joining, offered and answering moves nothing.
    household = joins("B")
    offer = str(uuid.uuid4())
    with site.cloud.engine.begin() as connection:
        connection.execute(
            insert(OFFERS).values(
                id=offer,
                household_id=household,
                retailer_id=site.shop,
                consent_id=consent,
                gtin=CHOCOLATE,
                name="Dark chocolate",
                kind="campaign",
                reason="Treat yourself",
                data_categories="",
                score=0.8,
                created_at=now,
                expires_at=now + timedelta(days=3),
                status="sent",
                campaign_id=campaign,
                arm="B",
            )
        )
    assert mark() == before
    with site.cloud.engine.begin() as connection:
        connection.execute(
            OFFERS.update().where(OFFERS.c.id == offer).values(status="accepted", answered_at=now)
        )
    assert mark() == before
    # A is shown: a household joining it changes what the page shows, and the mark.
    joins("A")
    assert mark() != before


def test_the_retailer_stream_wants_a_retailer_key(site: Site) -> None:
    with httpx.Client(base_url=site.cloud.url, timeout=10) as api:
        assert api.get("/retailer/stream").status_code == 401
        household = {"Authorization": f"Bearer {site.household_token}"}
        assert api.get("/retailer/stream", headers=household).status_code == 401
        key = {"Authorization": f"Bearer {site.key}"}
        too_long = "orders=1-1~webhooks=" + "9" * 400
        assert api.get("/retailer/stream", params={"since": too_long}, headers=key).status_code == 422


def test_a_campaign_stopped_from_the_page_is_stopped_in_the_api(site: Site) -> None:
    now = datetime.now(UTC)
    with site.cloud.engine.begin() as connection:
        campaign = campaigns.create(
            connection,
            site.shop,
            "Tea fortnight",
            TEA,
            [campaigns.Variant("A", "Green tea for the afternoon", 10)],
            now - timedelta(days=1),
            now + timedelta(days=13),
            budget=100,
            holdout_share=0.2,
            min_sample=20,
            now=now,
        )
    context = site.signed_in(site.key)
    page = context.new_page()
    page.goto("/web/retailer")
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept() if len(asked) > 1 else dialog.dismiss()

    page.on("dialog", answer)
    article = page.locator("article.campaign").filter(has_text="Tea fortnight")
    stop = article.get_by_role("button", name="Stop campaign Tea fortnight")
    # Dismissed the first time: nothing happens.
    stop.click()
    headers = {"Authorization": f"Bearer {site.key}"}
    with httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api:
        assert (
            next(c for c in api.get("/retailer/campaigns").json() if c["id"] == campaign)["stopped_at"]
            is None
        )
        stop.click()
        page.get_by_role("status").filter(has_text="Campaign Tea fortnight stopped").wait_for()
        found = next(c for c in api.get("/retailer/campaigns").json() if c["id"] == campaign)
    assert found["stopped_at"] is not None
    assert asked == ["Stop the campaign Tea fortnight? No more of its offers go out."] * 2
    fresh = page.locator("article.campaign").filter(has_text="Tea fortnight")
    fresh.locator(".tag", has_text="stopped").wait_for()
    assert fresh.get_by_role("button", name="Stop campaign Tea fortnight").count() == 0
    context.close()


def test_a_webhook_endpoint_disabled_enabled_and_rotated_from_the_page(site: Site) -> None:
    endpoint = str(uuid.uuid4())
    url = f"https://hooks.example/{endpoint[:8]}"
    with site.cloud.engine.begin() as connection:
        connection.execute(
            insert(WEBHOOK_ENDPOINTS).values(
                id=endpoint, retailer_id=site.shop, url=url, secret="s" * 32, created_at=datetime.now(UTC)
            )
        )
    context = site.signed_in(site.key)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/web/retailer")
    headers = {"Authorization": f"Bearer {site.key}"}
    with httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api:

        def state() -> dict[str, object]:
            return next(e for e in api.get("/retailer/webhooks").json() if e["id"] == endpoint)

        page.get_by_role("button", name=f"Disable webhooks to {url}").click()
        page.get_by_role("status").filter(has_text="Disabled").wait_for()
        assert state()["disabled_at"] is not None
        page.get_by_role("button", name=f"Enable webhooks to {url}").click()
        page.get_by_role("status").filter(has_text="Enabled again").wait_for()
        assert state()["disabled_at"] is None
        page.get_by_role("button", name=f"Rotate the signing secret of {url}").click()
        status = page.get_by_role("status").filter(has_text="New signing secret")
        status.wait_for()
    shown = status.inner_text().rsplit(": ", 1)[-1]
    with site.cloud.engine.connect() as connection:
        secret, previous = connection.execute(
            select(WEBHOOK_ENDPOINTS.c.secret, WEBHOOK_ENDPOINTS.c.previous_secret).where(
                WEBHOOK_ENDPOINTS.c.id == endpoint
            )
        ).one()
    assert shown == secret
    assert previous == "s" * 32
    # The secret is in the status line only, never in the page's HTML.
    assert secret not in page.content().replace(status.inner_html(), "")
    context.close()
