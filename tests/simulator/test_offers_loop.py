"""Offers in closed loop through real fridges: the households take the engine's offers at least
twice as often as the popularity baseline's, under the same consents, rules and caps."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from simulator.runner import run_scenario
from simulator.scenario import load_scenario


def run(strategy: str, folder: Path) -> dict[str, Any]:
    from tests.support.services import require_mosquitto

    require_mosquitto()
    base = load_scenario("offers-month")
    assert base.offers is not None
    scenario = base.model_copy(
        update={"households": 6, "days": 18, "offers": base.offers.model_copy(update={"strategy": strategy})}
    )
    summary: dict[str, Any] = run_scenario(scenario, folder)
    return summary


def test_the_engines_offers_are_taken_at_least_twice_as_often_as_the_popular_ones(tmp_path: Path) -> None:
    ours = run("frigo", tmp_path / "frigo")["offers"]
    baseline = run("popular", tmp_path / "popular")["offers"]
    assert ours["sent"] > 20
    assert baseline["sent"] > 20
    assert ours["acceptance_rate"] >= 2 * baseline["acceptance_rate"]
    assert set(baseline["by_kind"]) == {"complement"}  # popularity only: no needs, no lift
    assert "need" in ours["by_kind"]
    # Every offer reached its fridge and its answer came back to the cloud; none broke a cap.
    with sqlite3.connect(tmp_path / "frigo" / "cloud.db") as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM offers GROUP BY status").fetchall())
        weekly = db.execute(
            "SELECT max(n) FROM (SELECT household_id, strftime('%W', created_at) AS week, count(*) AS n "
            "FROM offers GROUP BY household_id, week)"
        ).fetchone()[0]
    answered = statuses.get("accepted", 0) + statuses.get("ordered", 0) + statuses.get("dismissed", 0)
    assert answered == ours["sent"]
    assert statuses.get("accepted", 0) + statuses.get("ordered", 0) == ours["accepted"]
    assert weekly <= 3
