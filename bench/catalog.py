"""A retailer's catalog upsert of 10,000 products in one request (issue 7: ≤ 2 s).

Starts a cloud worker with its HTTP API on a free port (SQLite in a temporary folder, or a
PostgreSQL database of its own), creates a retailer, and times ``PUT /retailer/catalog`` with
``--items`` products, first as inserts, then again as updates of every product; ``--repeat``
times each. Prints one JSON object.

    .venv/bin/python -m bench.catalog [--database sqlite|postgres] [--items 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlmodel import Session

from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import gtin
from shared.mqtt import MqttSettings
from tests.support.services import free_port, postgres_database


def items(count: int, price: float) -> list[dict[str, object]]:
    """Return ``count`` products with valid GTINs in the restricted-circulation range."""
    rows = []
    for n in range(count):
        body = f"21{n:010d}"
        rows.append(
            {
                "gtin": body + str(gtin.check_digit(body)),
                "name": f"Product {n}",
                "price": price,
                "currency": "EUR",
                "pack_size": 500,
                "unit": "g",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.database == "postgres":
            url = stack.enter_context(postgres_database())
        else:
            url = f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'cloud.db'}"
        settings = CloudSettings(
            database_url=url,
            mqtt=MqttSettings(host="127.0.0.1", port=free_port()),  # no broker: only the API is timed
            http_port=0,
            client_id=f"bench-catalog-{uuid.uuid4().hex[:8]}",
            planning=False,
        )
        cloud = CloudService(settings)
        cloud.start()
        stack.callback(cloud.stop)
        with Session(cloud.engine) as session:
            _, key = create_retailer(session, "Bench Foods", datetime.now(UTC))
            session.commit()
        timings: dict[str, list[float]] = {"insert": [], "update": []}
        with httpx.Client(
            base_url=cloud.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            for round_ in range(args.repeat):
                for kind, price in (("insert", 1.0), ("update", 2.0)):
                    if kind == "insert" and round_ > 0:
                        # A fresh retailer's catalog each round, so that every insert inserts.
                        with Session(cloud.engine) as session:
                            _, key = create_retailer(session, f"Bench Foods {round_}", datetime.now(UTC))
                            session.commit()
                        client.headers["Authorization"] = f"Bearer {key}"
                    body = {"items": items(args.items, price + round_)}
                    started = time.perf_counter()
                    response = client.put("/retailer/catalog", json=body)
                    timings[kind].append(time.perf_counter() - started)
                    response.raise_for_status()
                    assert response.json()["upserted"] == args.items
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "database": args.database,
                "items": args.items,
                "insert_s_median": round(statistics.median(timings["insert"]), 3),
                "update_s_median": round(statistics.median(timings["update"]), 3),
                "insert_s": [round(t, 3) for t in timings["insert"]],
                "update_s": [round(t, 3) for t in timings["update"]],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
