"""The simulated retailer through the order API: households order over HTTP with their tokens,
the retailer hears of each order by a signed webhook and answers with its key, and fridges match
every delivered pack as it is scanned in."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path


def test_online_fortnight_goes_through_the_order_api_end_to_end(tmp_path: Path) -> None:
    from simulator.runner import run_scenario
    from simulator.scenario import load_scenario
    from tests.support.services import require_mosquitto

    require_mosquitto()
    scenario = load_scenario("online-fortnight")
    assert scenario.retailer is not None
    assert scenario.retailer.through_api
    summary = run_scenario(scenario, tmp_path / "report")

    assert summary["events_stored"] == summary["events_recorded"] > 300
    assert summary["actions_refused"] == 0
    retailer = summary["retailer"]
    api = retailer["through_api"]
    # Every order the households placed is in the cloud, in the state its fate gave it.
    assert sum(api["orders"].values()) == retailer["orders"] >= 8
    assert api["orders"].get("delivered", 0) == retailer["delivered"] > 0
    assert api["orders"].get("rejected", 0) == retailer["failed"] > 0
    assert api["orders"].get("created", 0) == retailer["pending"]
    # Every webhook the cloud sent was delivered, verified and heard; none had to be looked up.
    assert api["webhooks_sent"] == {"delivered": api["webhooks_received"]}
    assert api["webhooks_received"] >= retailer["orders"]
    assert api["webhooks_refused"] == api["webhooks_missed"] == 0
    # Every delivered pack was matched to its order on the fridge when it was scanned in.
    assert api["packs_delivered"] == api["packs_matched_on_fridges"] > 0

    with sqlite3.connect(tmp_path / "report" / "cloud.db") as db:
        history = db.execute("SELECT actor, to_status FROM order_history").fetchall()
        lines = db.execute(
            "SELECT gtin, quantity, substitute_gtin, substitution, delivered_quantity FROM order_lines l "
            "JOIN orders o ON o.id = l.order_id WHERE o.status = 'delivered'"
        ).fetchall()
    # The households' policy (accept) decided each proposed substitution at once.
    proposed = sum(1 for actor, status in history if status == "substitution_proposed")
    assert proposed > 0
    assert sum(1 for actor, status in history if actor == "policy" and status == "picking") == proposed
    assert all(substitution == "approved" for _, _, swap, substitution, _ in lines if swap is not None)
    # What came is what the retailer's fate said (orders.csv holds the fate of each line).
    with (tmp_path / "report" / "orders.csv").open(newline="") as file:
        fate = [row for row in csv.DictReader(file) if row["status"] == "delivered"]
    assert sum(quantity for *_, quantity in lines) == sum(int(row["quantity"]) for row in fate)
    assert sum(quantity for *_, quantity in lines) == api["packs_delivered"]
