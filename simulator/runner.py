"""Run a scenario end to end: broker, cloud, households on real fridges, and a report folder.

Without a broker given, everything runs in this process on embedded defaults, as ``frigo demo``
does: the embedded amqtt broker and a cloud worker on SQLite, both in the report folder. The cloud
reads the same virtual clock as the fridges, so what it stores is stamped in virtual time.

The report folder holds ``summary.json`` (the run's figures) and ``truth.csv`` (one row per day,
household and product: eaten, bought, wasted, wanted but missing, stock at the end of the day).
"""

from __future__ import annotations

import csv
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from shared.clock import ManualClock
from shared.mqtt import MqttSettings
from simulator.scenario import Scenario
from simulator.world import DayReport, World, WorldReport, fridge_id

log = logging.getLogger(__name__)


def run_scenario(
    scenario: Scenario,
    report_dir: Path,
    *,
    mqtt: MqttSettings | None = None,
    database_url: str | None = None,
    on_day: Callable[[DayReport], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario``; write its report to ``report_dir``; return the summary."""
    from cloud.broker import EmbeddedBroker
    from cloud.models import EVENTS
    from cloud.service import CloudService
    from cloud.settings import CloudSettings

    report_dir.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(datetime.combine(scenario.start, datetime.min.time(), UTC))
    broker = None
    if mqtt is None:
        port = _free_port()
        broker = EmbeddedBroker("127.0.0.1", port)
        broker.start()
        mqtt = MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1")
    cloud = CloudService(
        CloudSettings(
            database_url=database_url or f"sqlite:///{report_dir / 'cloud.db'}",
            mqtt=mqtt,
            client_id=f"frigo-sim-cloud-{scenario.name}",
        ),
        clock,
        serve_http=False,
    )
    world = World(scenario.households, mqtt, report_dir / "fridges", clock, seed=scenario.seed)
    try:
        cloud.start()
        if not cloud.subscriber.wait_connected(15):
            raise TimeoutError(f"the cloud could not connect to the broker at {mqtt.host}:{mqtt.port}")
        world.start()
        report = world.run(scenario.days, on_day)
        with cloud.engine.connect() as connection:
            stored = int(connection.execute(select(func.count()).select_from(EVENTS)).scalar_one())
    finally:
        world.stop()
        cloud.stop()
        if broker is not None:
            broker.stop()
    summary = _summary(scenario, report, stored)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_truth(report_dir / "truth.csv", report)
    return summary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _summary(scenario: Scenario, report: WorldReport, stored: int) -> dict[str, Any]:
    households = []
    for index in range(scenario.households):
        truths = [day.truths[index] for day in report.days]
        households.append(
            {
                "device_id": fridge_id(index + 1),
                "packs_bought": sum(sum(t.bought.values()) for t in truths),
                "packs_eaten": round(sum(sum(t.eaten.values()) for t in truths), 2),
                "packs_wasted": sum(sum(t.wasted.values()) for t in truths),
                "packs_missing": round(sum(sum(t.wanted_missing.values()) for t in truths), 2),
                "days_away": sum(t.away for t in truths),
                "shopping_trips": sum(t.shopping for t in truths),
            }
        )
    return {
        "scenario": scenario.model_dump(mode="json"),
        "wall_seconds": round(report.wall_seconds, 2),
        "actions": sum(d.actions for d in report.days),
        "events_recorded": report.events,
        "events_stored": stored,
        "actions_refused": report.refused,
        "households": households,
    }


def _write_truth(path: Path, report: WorldReport) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["day", "device_id", "code", "eaten", "bought", "wasted", "missing", "stock"])
        for day in report.days:
            for index, truth in enumerate(day.truths):
                codes = truth.eaten.keys() | truth.bought.keys() | truth.wasted.keys() | truth.stock.keys()
                for code in sorted(codes | truth.wanted_missing.keys()):
                    writer.writerow(
                        [
                            truth.day.isoformat(),
                            fridge_id(index + 1),
                            code,
                            round(truth.eaten.get(code, 0.0), 4),
                            truth.bought.get(code, 0),
                            truth.wasted.get(code, 0),
                            round(truth.wanted_missing.get(code, 0.0), 4),
                            round(truth.stock.get(code, 0.0), 4),
                        ]
                    )
