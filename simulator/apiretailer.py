"""The simulated retailer behind the order API: households order over HTTP, the retailer hears of
each order by a signed webhook and moves it along with an HTTP client of its own (httpx).

:class:`ApiRetailer` implements :class:`simulator.retailer.Retailer`, so a household's life does not
know which retailer it orders from. Underneath, a :class:`~simulator.retailer.SimulatedRetailer`
draws each order's fate when it is placed (late, failed, lines out of stock or substituted), from
the run's seed, so a run through the API delivers what the same run in memory would. What the API
adds is the real path: the household's token places the order (``POST /households/{id}/orders``
with an Idempotency-Key); the cloud signs ``order.created`` to this retailer's webhook receiver,
which verifies it; on the delivery day the retailer accepts, picks, proposes its substitutions
(the simulated households accept them, by their substitution policy), dispatches and delivers, or
rejects an order that fails, each with ``POST /retailer/orders/{id}/events``. The fridges hear of
every change over MQTT, as real ones would.

The cloud signs webhooks with its clock, which here is the run's virtual clock: it can run hours
ahead while a webhook is on its way, so the receiver accepts timestamps up to two virtual days
old. The signature itself is checked as a real receiver checks it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from cloud.outbox.signing import WebhookVerificationError, verify
from shared.clock import Clock
from simulator.catalog import CATALOG, Category, Product
from simulator.errors import SimulatorError
from simulator.retailer import (
    DELIVERY_HOURS,
    Order,
    OrderLine,
    OrderStatus,
    RetailerSettings,
    SimulatedRetailer,
)

log = logging.getLogger(__name__)

# Pack prices by category, in euros: a simulated shop's price list.
PRICES: dict[Category, float] = {
    Category.DAIRY: 1.29,
    Category.CHEESE: 2.89,
    Category.MEAT: 4.99,
    Category.FISH: 5.49,
    Category.VEGETABLES: 1.49,
    Category.FRUIT: 1.99,
    Category.READY_MEALS: 3.99,
    Category.DRINKS: 1.19,
}
DEFAULT_PRICE = 2.49
# Webhook timestamps are virtual: the run's clock may pass this much before one arrives.
VIRTUAL_TOLERANCE_S = 2 * 86_400
# Wall seconds to wait for an order's webhook before asking the API for the order instead.
WEBHOOK_WAIT_S = 10.0
# Delivery slots are published this many days ahead, one evening slot a day.
SLOT_DAYS_AHEAD = 7
SLOT_CAPACITY = 100_000


def catalog_items(catalog: Sequence[Product]) -> list[dict[str, object]]:
    """Return the simulated shop's catalog as a retailer uploads it (``PUT /retailer/catalog``)."""
    return [
        {
            "gtin": product.code,
            "name": product.name,
            "price": PRICES.get(product.category, DEFAULT_PRICE),
            "currency": "EUR",
            "pack_size": product.pack_size,
            "unit": product.unit,
            "category": product.category.value,
        }
        for product in catalog
    ]


class RetailerApiError(SimulatorError):
    """The order API answered the simulated retailer or a household in a way it cannot go on from."""


class ApiRetailer:
    """A retailer that works through the cloud's order API; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        retailer_id: str,
        tokens: Callable[[str], str],
        household_of: Callable[[str], str],
        clock: Clock,
        settings: RetailerSettings | None = None,
        *,
        seed: int = 1,
        catalog: Sequence[Product] = CATALOG,
        timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings or RetailerSettings()
        self.retailer_id = retailer_id
        self._fate = SimulatedRetailer(self.settings, seed=seed, catalog=catalog)
        self._catalog = list(catalog)
        self._by_code = {p.code: p for p in catalog}
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._shop = httpx.Client(
            base_url=base_url, timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )
        self._tokens = tokens
        self._household_of = household_of
        self._homes: dict[str, httpx.Client] = {}
        self._clock = clock
        self._cloud_ids: dict[str, str] = {}  # the fate's order id -> the cloud's
        self._heard: dict[str, str] = {}  # cloud order id -> the last webhook type heard
        self._delivered: list[tuple[str, str]] = []  # (household, cloud order id) not yet taken
        self._heard_changed = threading.Condition()
        self._secret: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._slots_until: date | None = None
        self.webhooks_received = 0
        self.webhooks_refused = 0
        self.webhooks_missed = 0

    # -- the Retailer protocol -------------------------------------------------------------------

    @property
    def lead_time_days(self) -> int:
        """Return the promised days from an order to its delivery."""
        return self.settings.lead_time_days

    @property
    def orders(self) -> list[Order]:
        """Return every order placed, with what became of it."""
        return self._fate.orders

    def place(self, household: str, lines: Sequence[OrderLine], at: datetime) -> Order:
        """Place the household's order through the API, with its own token."""
        order = self._fate.place(household, lines, at)
        self._publish_slots(at.date())
        home = self._home(household)
        household_id = self._household_of(household)
        response = home.post(
            f"/households/{household_id}/orders",
            json={"lines": [{"gtin": line.code, "quantity": line.quantity} for line in lines]},
            headers={"Idempotency-Key": order.order_id},
        )
        if response.status_code != 201:
            raise RetailerApiError(f"{household} could not order: {response.status_code} {response.text}")
        self._cloud_ids[order.order_id] = response.json()["id"]
        return order

    def deliveries(self, household: str, day: date) -> list[Order]:
        """Carry out, through the API, the household's orders due by ``day``; return them settled."""
        due = self._fate.deliveries(household, day)
        for order in due:
            self._carry_out(order)
        return due

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the webhook receiver; register it, the catalog and the first delivery slots."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, name="retailer-webhooks", daemon=True).start()
        url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"
        endpoint = self._call("POST", "/retailer/webhooks", json={"url": url})
        self._secret = endpoint["secret"]
        self._call("PUT", "/retailer/catalog", json={"items": catalog_items(self._catalog)})
        self._publish_slots(self._clock.now().date())

    def stop(self) -> None:
        """Stop the receiver and close the HTTP clients."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._shop.close()
        for client in self._homes.values():
            client.close()

    def choose_me(self, household: str) -> None:
        """Make this retailer the household's, taking its substitutions (as the in-memory one does)."""
        household_id = self._household_of(household)
        response = self._home(household).put(
            f"/households/{household_id}/retailer",
            json={"retailer_id": self.retailer_id, "substitution_policy": "accept"},
        )
        if response.status_code != 200:
            raise RetailerApiError(f"{household} could not choose its retailer: {response.text}")

    # -- the retailer's side ---------------------------------------------------------------------

    def _carry_out(self, order: Order) -> None:
        cloud_id = self._cloud_ids[order.order_id]
        self._await_webhook(cloud_id)
        path = f"/retailer/orders/{cloud_id}/events"
        if order.status is OrderStatus.FAILED:
            self._call("POST", path, json={"type": "rejected", "reason": "the van could not come"})
            return
        self._call("POST", path, json={"type": "accepted"})
        self._call("POST", path, json={"type": "picking"})
        swaps = [line for line in order.delivered if line.substituted]
        if swaps:
            proposal = [
                {
                    "gtin": line.ordered,
                    "substitute_gtin": line.code,
                    "substitute_name": self._by_code[line.code].name
                    if line.code in self._by_code
                    else line.code,
                    "substitute_quantity": line.quantity,
                }
                for line in swaps
            ]
            answer = self._call(
                "POST", path, json={"type": "substitution_proposed", "substitutions": proposal}
            )
            if answer["status"] != "picking":
                raise RetailerApiError(
                    f"order {cloud_id}: the household did not take the substitutions at once"
                )
        came = {line.ordered: line.quantity for line in order.delivered}
        self._call("POST", path, json={"type": "dispatched"})
        delivered = [{"gtin": line.code, "quantity": came.get(line.code, 0)} for line in order.lines]
        self._call("POST", path, json={"type": "delivered", "delivered": delivered})
        self._delivered.append((order.household, cloud_id))

    def take_delivered(self) -> list[tuple[str, str]]:
        """Return (household, cloud order id) of the orders delivered since the last call."""
        taken, self._delivered = self._delivered, []
        return taken

    def _await_webhook(self, cloud_id: str) -> None:
        """Wait for the order's order.created webhook; if it does not come, look the order up."""
        with self._heard_changed:
            if self._heard_changed.wait_for(lambda: cloud_id in self._heard, WEBHOOK_WAIT_S):
                return
        self.webhooks_missed += 1
        log.warning(
            "no webhook for order %s within %.0f s: reading it from the API", cloud_id, WEBHOOK_WAIT_S
        )
        self._call("GET", f"/retailer/orders/{cloud_id}")

    def _publish_slots(self, today: date) -> None:
        """Keep one evening slot a day published a week ahead."""
        until = today + timedelta(days=SLOT_DAYS_AHEAD)
        if self._slots_until is not None and self._slots_until >= until:
            return
        first = today if self._slots_until is None else self._slots_until + timedelta(days=1)
        zone = self._clock.now().tzinfo
        start, end = (timedelta(hours=hour) for hour in DELIVERY_HOURS)
        slots = [
            {
                "starts_at": (datetime.combine(first + timedelta(days=n), time(), zone) + start).isoformat(),
                "ends_at": (datetime.combine(first + timedelta(days=n), time(), zone) + end).isoformat(),
                "capacity": SLOT_CAPACITY,
            }
            for n in range((until - first).days + 1)
        ]
        if slots:
            self._call("PUT", "/retailer/slots", json={"slots": slots})
        self._slots_until = until

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._shop.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise RetailerApiError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def _home(self, household: str) -> httpx.Client:
        client = self._homes.get(household)
        if client is None:
            token = self._tokens(self._household_of(household))
            client = httpx.Client(
                base_url=self._base_url, timeout=self._timeout_s, headers={"Authorization": f"Bearer {token}"}
            )
            self._homes[household] = client
        return client

    def _heard_webhook(self, headers: dict[str, str], body: bytes) -> bool:
        """Verify and note one webhook; return whether it was genuine."""
        assert self._secret is not None
        try:
            verify(
                [self._secret],
                headers,
                body,
                int(self._clock.now().timestamp()),
                tolerance_s=VIRTUAL_TOLERANCE_S,
            )
        except WebhookVerificationError as exc:
            self.webhooks_refused += 1
            log.warning("refused a webhook: %s", exc)
            return False
        message = json.loads(body)
        with self._heard_changed:
            self.webhooks_received += 1
            self._heard[message["data"]["id"]] = message["type"]
            self._heard_changed.notify_all()
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        retailer = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                ok = retailer._heard_webhook(dict(self.headers.items()), body)
                self.send_response(204 if ok else 400)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Receiver
