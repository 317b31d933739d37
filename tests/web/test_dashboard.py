"""The household dashboard in a real browser (Debian's Chromium through Playwright), against a real
cloud worker fed by a real edge Agent through a real Mosquitto: the buttons change what the API
answers, another household's token sees nothing, a scan on the fridge shows up on the open page
without a reload, and each page stays small. The screenshots in docs/screenshots/ come from here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import insert
from sqlmodel import Session

from cloud.api.dependencies import WEB_COOKIE
from cloud.commerce import consents
from cloud.commerce.catalog import upsert_catalog
from cloud.db.tables import OFFERS, PLANNED_ORDER_LINES, PLANNED_ORDERS, Device
from cloud.identity.devices import household_id_for
from cloud.identity.retailers import create_retailer
from cloud.identity.tokens import issue_token
from cloud.service import CloudService
from cloud.settings import CloudSettings
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared import topics
from shared.gtin import make_gtin13
from shared.messages import ItemAdded, ItemConsumed, ItemMoved, Location, encode
from tests.support.pages import PAGE_LIMIT, sign_in, transferred
from tests.support.services import require_chromium, running_mosquitto

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

pytestmark = [pytest.mark.chromium, pytest.mark.mosquitto]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MILK, YOGURT, HAM, PEAS, BUTTER, PASTA, BREAD = (make_gtin13(f"40011122200{i}") for i in range(7))
SECRET = make_gtin13("400999888777")  # only the other household has it
CATALOG = [
    (MILK, "Milk 1 l", "dairy"),
    (YOGURT, "Greek yogurt", "dairy"),
    (HAM, "Cooked ham", "meat"),
    (PEAS, "Frozen peas", "vegetables"),
    (BUTTER, "Butter 250 g", "dairy"),
    (PASTA, "Fusilli 500 g", "dry"),
    (BREAD, "Sourdough loaf", "bakery"),
    (SECRET, "Truffle cheese", "cheese"),
]


@dataclass
class Site:
    cloud: CloudService
    agent: Agent
    browser: Browser
    household: str
    token: str
    other_household: str
    other_token: str
    shop: str
    basket: str
    offer: str

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.cloud.url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )

    def signed_in(self, token: str | None = None) -> BrowserContext:
        """Return a browser context signed in through the form."""
        context = self.browser.new_context(base_url=self.cloud.url, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto("/web/sign-in")
        page.get_by_label("Token").fill(token or self.token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/web/households/**")
        page.close()
        return context

    def open(self, context: BrowserContext) -> Page:
        page = context.new_page()
        page.goto(f"/web/households/{self.household}")
        return page


def history(device: str, now: datetime) -> list[tuple[str, bytes]]:
    """Three weeks of a pantry fridge: milk bought every five days and used daily, and a few lots
    in other places and at other stages of their life."""
    events: list[ItemAdded | ItemConsumed | ItemMoved] = []

    def ids() -> dict[str, Any]:
        n = len(events) + 1
        return {"event_id": uuid.uuid4(), "device_id": device, "seq": n}

    start = now - timedelta(days=21)
    lot = 0
    for day in range(21):
        at = start + timedelta(days=day)
        if day % 5 == 0:
            lot += 1
            due = (at + timedelta(days=9)).date()
            events.append(
                ItemAdded(
                    **ids(), lot_id=lot, occurred_at=at, code=MILK, quantity=1000, unit="ml", best_before=due
                )
            )
        events.append(
            ItemConsumed(
                **ids(), lot_id=lot, occurred_at=at + timedelta(hours=8), code=MILK, quantity=200, unit="ml"
            )
        )
    at = now - timedelta(hours=2)
    lots: list[tuple[str, date | None, Location]] = [
        (YOGURT, now.date() + timedelta(days=1), "fridge"),
        (HAM, now.date() - timedelta(days=1), "fridge"),
        (PASTA, None, "door"),
        (PEAS, now.date() + timedelta(days=120), "fridge"),
    ]
    for code, bb, location in lots:
        lot += 1
        events.append(
            ItemAdded(**ids(), lot_id=lot, occurred_at=at, code=code, best_before=bb, location=location)
        )
    events.append(
        ItemMoved(
            **ids(), lot_id=lot, occurred_at=at, code=PEAS, from_location="fridge", to_location="freezer"
        )
    )
    return [(topics.events(device), encode(event)) for event in events]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    suffix = uuid.uuid4().hex[:6]
    directory = tmp_path_factory.mktemp("web")
    (directory / "mosquitto").mkdir()
    with running_mosquitto(directory / "mosquitto") as broker:
        mqtt = broker.mqtt()
        cloud = CloudService(
            CloudSettings(
                database_url=f"sqlite:///{directory / 'cloud.db'}",
                mqtt=mqtt,
                http_port=0,
                client_id=f"web-{suffix}",
                auto_enroll=True,
                planning=False,
            )
        )
        cloud.start()
        agent = Agent(
            EdgeSettings(device_id=f"fridge-web-{suffix}", data_dir=directory / "fridge", mqtt=mqtt)
        )
        playwright = sync_playwright().start()
        try:
            assert cloud.subscriber.wait_connected(10)
            agent.start()
            assert agent.scan(BREAD)  # the fridge's first event enrolls it and makes its household
            assert agent.wait_drained(timeout=15)
            household = household_id_for(agent.device_id)
            now = datetime.now(UTC)
            with Session(cloud.engine) as session:
                session.add(Device(id=f"pantry-{suffix}", household_id=household, created_at=now))
                shop, _ = create_retailer(session, f"Corner Shop {suffix}", now)
                create_retailer(session, f"Green Grocer {suffix}", now)
                session.commit()
                shop_id = shop.id
            cloud.ingestor.process(history(f"pantry-{suffix}", now))
            other_device = f"fridge-other-{suffix}"
            cloud.ingestor.process(
                [
                    (
                        topics.events(other_device),
                        encode(
                            ItemAdded(
                                event_id=uuid.uuid4(),
                                device_id=other_device,
                                seq=1,
                                lot_id=1,
                                occurred_at=now,
                                code=SECRET,
                            )
                        ),
                    )
                ]
            )
            other = household_id_for(other_device)
            basket, offer = str(uuid.uuid4()), str(uuid.uuid4())
            with cloud.engine.begin() as connection:
                upsert_catalog(
                    connection,
                    shop_id,
                    [
                        {
                            "gtin": g,
                            "name": n,
                            "price": 1.5,
                            "currency": "EUR",
                            "pack_size": 1,
                            "unit": "unit",
                            "category": c,
                        }
                        for g, n, c in CATALOG
                    ],
                    now,
                )
                allowed = consents.grant(connection, household, shop_id, "offers", now - timedelta(days=3))
                consents.grant(connection, household, shop_id, "analytics", now - timedelta(days=3))
                connection.execute(
                    insert(PLANNED_ORDERS).values(
                        id=basket,
                        household_id=household,
                        cycle=1,
                        idempotency_key=f"{household}:1",
                        status="proposed",
                        created_at=now,
                    )
                )
                connection.execute(
                    insert(PLANNED_ORDER_LINES).values(
                        order_id=basket,
                        code=MILK,
                        packs=2,
                        quantity=2.0,
                        unit="unit",
                        reason="runs out on Friday",
                    )
                )
                connection.execute(
                    insert(OFFERS).values(
                        id=offer,
                        household_id=household,
                        retailer_id=shop_id,
                        consent_id=allowed,
                        gtin=BUTTER,
                        name="Butter 250 g",
                        category="dairy",
                        kind="need",
                        reason="your butter runs out on Thursday",
                        data_categories="inventory,consumption",
                        score=0.8,
                        created_at=now,
                        expires_at=now + timedelta(days=3),
                        status="sent",
                    )
                )
            with Session(cloud.engine) as session:
                token = issue_token(session, "household", household, now)
                other_token = issue_token(session, "household", other, now)
                session.commit()
            browser = playwright.chromium.launch(executable_path=chromium)
            try:
                yield Site(
                    cloud, agent, browser, household, token, other, other_token, shop_id, basket, offer
                )
            finally:
                browser.close()
        finally:
            playwright.stop()
            agent.stop()
            cloud.stop()


def test_pages_are_small_and_screenshots_are_saved(site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = site.browser.new_context(base_url=site.cloud.url, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    page.goto("/web/sign-in", wait_until="networkidle")
    page.screenshot(path=str(SCREENSHOTS / "sign-in.png"), full_page=True)
    sizes = {"sign-in": transferred(responses)}
    responses.clear()
    page.get_by_label("Token").fill(site.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/web/households/**")
    page.wait_for_load_state("load")
    page.locator("#inventory").filter(has_text="Milk 1 l").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "household.png"), full_page=True)
    sizes["household"] = transferred(responses)
    context.close()
    for name, size in sizes.items():
        assert 0 < size < PAGE_LIMIT, (name, size)
    for name in ("sign-in.png", "household.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
    print(json.dumps(sizes))


def test_signing_in_and_out_works_from_the_keyboard(site: Site) -> None:
    context = site.browser.new_context(base_url=site.cloud.url)
    page = context.new_page()
    page.goto("/web/sign-in")

    def tab_to(selector: str) -> None:
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({json.dumps(selector)})"):
                return
        pytest.fail(f"{selector} cannot be reached with Tab")

    tab_to("#token")
    page.keyboard.type("frh_not-a-token")
    page.keyboard.press("Enter")
    page.get_by_role("alert").filter(has_text="That token is not valid").wait_for()
    tab_to("#token")
    page.keyboard.type(site.token)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/web/households/{site.household}")
    (cookie,) = [c for c in context.cookies() if c["name"] == WEB_COOKIE]
    # The cookie holds a session's id, never the token, and no script of the page can read it.
    assert site.token not in cookie["value"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    tab_to("form.sign-out button")
    page.keyboard.press("Enter")
    page.wait_for_url("**/web/sign-in")
    # Signed out: the cookie is gone, and the page sends back to the form.
    page.goto(f"/web/households/{site.household}")
    assert page.url.endswith("/web/sign-in")
    context.close()
    # The old cookie, replayed (copied off the machine before signing out), opens nothing either.
    replayed = {WEB_COOKIE: cookie["value"]}
    with httpx.Client(base_url=site.cloud.url, timeout=10, cookies=replayed) as stolen:
        assert stolen.get(f"/households/{site.household}/inventory").status_code == 401
        assert stolen.get(f"/households/{site.household}/stream").status_code == 401
        page_answer = stolen.get(f"/web/households/{site.household}")
        assert page_answer.status_code == 303
        assert page_answer.headers["location"] == "/web/sign-in"


def test_a_basket_approved_on_the_page_is_approved_in_the_api(site: Site) -> None:
    context = site.signed_in()
    page = site.open(context)
    basket = page.locator("article.basket").filter(has_text="runs out on Friday")
    basket.get_by_role("button", name="Approve").click()
    page.get_by_role("status").filter(has_text="Basket approved").wait_for()
    context.close()
    with site.api() as api:
        (planned,) = [
            p
            for p in api.get(f"/households/{site.household}/planned-orders").json()
            if p["id"] == site.basket
        ]
    assert planned["status"] == "approved"


def test_an_offer_accepted_on_the_page_is_accepted_in_the_api(site: Site) -> None:
    context = site.signed_in()
    page = site.open(context)
    offer = page.locator("article.offer").filter(has_text="your butter runs out on Thursday")
    offer.get_by_role("button", name="Accept").click()
    page.get_by_role("status").filter(has_text="Offer accepted").wait_for()
    context.close()
    with site.api() as api:
        (answered,) = [
            o for o in api.get(f"/households/{site.household}/offers").json() if o["id"] == site.offer
        ]
    assert answered["status"] == "accepted"


def test_a_consent_withdrawn_on_the_page_is_no_longer_active(site: Site) -> None:
    context = site.signed_in()
    page = site.open(context)
    page.get_by_role("button", name=f"Withdraw analytics from Corner Shop {site.shop.split('-')[-1]}").click()
    page.get_by_role("status").filter(has_text="Consent withdrawn").wait_for()
    context.close()
    with site.api() as api:
        active = api.get(f"/households/{site.household}/consents", params={"active": "true"}).json()
        ledger = api.get(f"/households/{site.household}/consents").json()
    assert [(g["recipient"], g["purpose"]) for g in active] == [(site.shop, "offers")]
    (withdrawn,) = [g for g in ledger if g["purpose"] == "analytics"]
    assert withdrawn["active"] is False
    assert withdrawn["withdrawn_at"] is not None


def test_another_households_token_sees_none_of_its_data(site: Site) -> None:
    context = site.signed_in(site.other_token)
    page = context.new_page()
    # The other household's own page works, and shows its own data.
    page.goto(f"/web/households/{site.other_household}")
    assert "Truffle cheese" in page.content()
    for path in (f"/web/households/{site.household}", f"/web/households/{site.household}/inventory"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403
        html = page.content()
        for secret in (
            "Milk 1 l",
            MILK,
            "Greek yogurt",
            "runs out on Friday",
            "butter runs out",
            site.basket,
        ):
            assert secret not in html
    # The API under the cookie, and the event stream, refuse it as well.
    for path in (f"/households/{site.household}/inventory", f"/households/{site.household}/stream"):
        answer = context.request.get(path)
        assert answer.status == 403, path
    context.close()
    # Without a cookie, the page sends to the sign-in form.
    anonymous = site.browser.new_context(base_url=site.cloud.url)
    page = anonymous.new_page()
    page.goto(f"/web/households/{site.household}")
    assert page.url.endswith("/web/sign-in")
    assert "Milk 1 l" not in page.content()
    anonymous.close()
    # A change through the cookie needs the dashboard's header: a form of another site cannot.
    session = {WEB_COOKIE: sign_in(site.cloud.url, site.token)}
    with httpx.Client(base_url=site.cloud.url, timeout=10, cookies=session) as raw:
        assert (
            raw.post(
                f"/households/{site.household}/consents/withdraw",
                json={"recipient": site.shop, "purpose": "offers"},
            ).status_code
            == 401
        )
        assert raw.get(f"/households/{site.household}/inventory").status_code == 200
    with httpx.Client(base_url=site.cloud.url, timeout=10) as anonymous_client:
        assert anonymous_client.get(f"/households/{site.household}/stream").status_code == 401


def test_a_scan_on_the_fridge_shows_on_the_open_page_without_a_reload(site: Site) -> None:
    context = site.signed_in()
    page = site.open(context)
    inventory = page.locator("#inventory")
    assert "Butter 250 g" not in inventory.inner_text()
    page.evaluate("window.notReloaded = true")
    page.wait_for_timeout(300)  # the event stream is open
    scanned = time.monotonic()
    assert site.agent.scan(BUTTER)
    inventory.filter(has_text="Butter 250 g").wait_for(timeout=2000)
    elapsed = time.monotonic() - scanned
    assert elapsed < 2.0
    assert page.evaluate("window.notReloaded") is True
    context.close()


def test_deleting_the_household_asks_for_confirmation_first(site: Site) -> None:
    # The other household goes: the tests above are done with it.
    context = site.signed_in(site.other_token)
    page = context.new_page()
    page.goto(f"/web/households/{site.other_household}")
    page.get_by_text("Delete this household").click()
    page.get_by_label("Type the household id").fill("something else")
    page.get_by_role("button", name="Delete for good").click()
    page.get_by_role("status").filter(has_text="Type the household id exactly").wait_for()
    headers = {"Authorization": f"Bearer {site.other_token}"}
    with httpx.Client(base_url=site.cloud.url, timeout=10, headers=headers) as api:
        assert api.get(f"/households/{site.other_household}/inventory").status_code == 200
        page.get_by_label("Type the household id").fill(site.other_household)
        page.get_by_role("button", name="Delete for good").click()
        page.wait_for_url("**/web/sign-in")
        # Erased: the token went with it.
        assert api.get(f"/households/{site.other_household}/inventory").status_code == 401
    context.close()
