"""How long fridge commands and other retailers' webhooks wait while webhooks drip (issue 17).

A worker (SQLite, Mosquitto, the webhook lane's defaults) and, per case, some retailers whose
endpoints answer one byte a second (46 bytes, so every attempt runs to its 15 s deadline), each
with more deliveries queued than the lane lets it send at once. While those drip:

- commands: ``--commands`` fridge commands are queued one every ``--every`` seconds, as the API
  queues them (``commands.enqueue_for_household``), and timed from commit to arrival at a fridge
  subscribed on Mosquitto;
- webhooks: one webhook of a retailer whose endpoint answers at once is queued, and timed from
  commit to arrival at its receiver;
- held: how long the lane held each dripping delivery, from the receiver's accept to the recorded
  outcome (the deadline).

Prints one JSON object with, per case (no dripping retailer, one, and enough to hold every thread
of the lane), the median, 95th percentile and worst of each.

    .venv/bin/python -m bench.webhook_isolation [--commands 20] [--every 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from cloud.db.tables import RETAILERS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from cloud.identity import devices
from cloud.outbox import commands, deliveries, lane
from cloud.outbox.signing import new_secret
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.messages import CatalogUpdated, ProductInfo
from tests.support.listener import CommandListener
from tests.support.services import Mosquitto, mosquitto_binary
from tests.support.slow import SlowReceiver

DEVICE = "bench-fridge"
MILK = ProductInfo(code="4006381333931", name="Milk 1 l")


class FastReceiver:
    """A retailer's server that answers 204 at once and notes when each message arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.arrived[self.headers["webhook-id"]] = time.monotonic()
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def add_shop(engine: Engine, url: str) -> str:
    retailer = f"shop-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(RETAILERS.insert().values(id=retailer, name=retailer, created_at=now))
        connection.execute(
            WEBHOOK_ENDPOINTS.insert().values(
                id=str(uuid.uuid4()), retailer_id=retailer, url=url, secret=new_secret(), created_at=now
            )
        )
    return retailer


def queue_webhooks(engine: Engine, retailer: str, count: int) -> list[str]:
    """Queue ``count`` messages for the retailer; return their ids."""
    with engine.begin() as connection:
        for n in range(count):
            deliveries.enqueue(
                connection,
                retailer,
                "order.created",
                {"id": f"bench-{n}"},
                datetime.now(UTC),
                household_id=devices.household_id_for(DEVICE),
                order_id=None,
            )
        rows = connection.execute(
            select(WEBHOOK_DELIVERIES.c.id)
            .join(WEBHOOK_ENDPOINTS, WEBHOOK_ENDPOINTS.c.id == WEBHOOK_DELIVERIES.c.endpoint_id)
            .where(WEBHOOK_ENDPOINTS.c.retailer_id == retailer)
        )
        return [str(row.id) for row in rows]


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


class Watcher:
    """Note when each delivery of some retailers first has an attempt recorded."""

    def __init__(self, engine: Engine, retailers: list[str]) -> None:
        self.recorded: dict[str, float] = {}
        self._engine = engine
        self._retailers = retailers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        query = (
            select(WEBHOOK_DELIVERIES.c.id)
            .join(WEBHOOK_ENDPOINTS, WEBHOOK_ENDPOINTS.c.id == WEBHOOK_DELIVERIES.c.endpoint_id)
            .where(WEBHOOK_ENDPOINTS.c.retailer_id.in_(self._retailers), WEBHOOK_DELIVERIES.c.attempts >= 1)
        )
        while not self._stop.wait(0.02):
            with self._engine.connect() as connection:
                for row in connection.execute(query):
                    self.recorded.setdefault(str(row.id), time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def one_case(
    cloud: CloudService, listener: CommandListener, dripping: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one case with ``dripping`` slow retailers; return its figures."""
    drips = [SlowReceiver(every_s=1.0) for _ in range(dripping)]
    fast = FastReceiver()
    slow_shops = [add_shop(cloud.engine, drip.url()) for drip in drips]
    watcher = Watcher(cloud.engine, slow_shops)
    try:
        for shop in slow_shops:
            queue_webhooks(cloud.engine, shop, lane.PER_RETAILER + 1)
        first_wave = min(lane.POOL_SIZE, dripping * lane.PER_RETAILER)
        deadline = time.monotonic() + 10
        while sum(len(drip.got()) for drip in drips) < first_wave:
            if time.monotonic() > deadline:
                raise TimeoutError("the lane did not take the dripping webhooks")
            time.sleep(0.01)
        household = devices.household_id_for(DEVICE)
        latencies = []
        for _ in range(args.commands):
            queued = time.monotonic()
            with cloud.engine.begin() as connection:
                commands.enqueue_for_household(
                    connection,
                    household,
                    lambda device: CatalogUpdated(device_id=device, products=(MILK,)),
                    datetime.now(UTC),
                )
            arrived, _ = listener.next(timeout=60)
            latencies.append(arrived - queued)
            time.sleep(max(0.0, queued + args.every - time.monotonic()))
        queued = time.monotonic()
        (message,) = queue_webhooks(cloud.engine, add_shop(cloud.engine, fast.url()), 1)
        while message not in fast.arrived:
            if time.monotonic() - queued > 60:
                raise TimeoutError("the fast retailer's webhook did not arrive")
            time.sleep(0.005)
        webhook_s = fast.arrived[message] - queued
        while len(watcher.recorded) < first_wave and time.monotonic() - queued < 60:
            time.sleep(0.05)
    finally:
        watcher.close()
        fast.close()
        for drip in drips:
            drip.close()
    # The first wave: from the first accept of the dripping webhooks to each recorded outcome.
    accepted = min((visit.accepted for drip in drips for visit in drip.got()), default=0.0)
    held = sorted(at - accepted for at in watcher.recorded.values())[:first_wave]
    return {
        "dripping_retailers": dripping,
        "webhook_threads_held": first_wave,
        "command_latency": summary(latencies),
        "other_retailer_webhook_ms": round(webhook_s * 1000, 1),
        "drip_held": summary(held) if held else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--every", type=float, default=0.3, help="seconds between commands")
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("mosquitto is not installed: apt-get install mosquitto")
    cases = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        broker = Mosquitto(binary, folder)
        broker.start()
        try:
            mqtt = broker.mqtt()
            cloud = CloudService(
                CloudSettings(
                    database_url=f"sqlite:///{folder / 'cloud.db'}",
                    mqtt=mqtt,
                    http_port=0,
                    client_id="bench-webhook-isolation",
                    planning=False,
                    webhook_allow_private=True,
                ),
                serve_http=False,
            )
            cloud.start()
            try:
                if not cloud.subscriber.wait_connected(10):
                    raise TimeoutError("the cloud did not connect to Mosquitto")
                with Session(cloud.engine) as session:
                    devices.provision(session, DEVICE)
                    session.commit()
                listener = CommandListener(mqtt, DEVICE)
                try:
                    for dripping in (0, 1, lane.POOL_SIZE // lane.PER_RETAILER):
                        cases.append(one_case(cloud, listener, dripping, args))
                        print(json.dumps(cases[-1]), flush=True)
                finally:
                    listener.close()
            finally:
                cloud.stop()
        finally:
            broker.stop()
    print(
        json.dumps(
            {
                "cases": cases,
                "deadline_s": deliveries.DEADLINE_S,
                "pool_size": lane.POOL_SIZE,
                "per_retailer": lane.PER_RETAILER,
                "commands": args.commands,
                "every_s": args.every,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
