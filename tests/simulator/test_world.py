"""A world of households on real agents, a real Mosquitto and a cloud worker, on one virtual clock."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.db.tables import EVENTS
from cloud.service import CloudService
from cloud.settings import CloudSettings
from edge.sensors.door import SimulatedDoor
from edge.sensors.thermometer import SimulatedThermometer
from shared.clock import ManualClock
from simulator.world import FaultKind, World, WorldReport
from tests.support.services import running_mosquitto

pytestmark = pytest.mark.mosquitto

START = datetime(2026, 1, 5, tzinfo=UTC)
Stream = list[tuple[str, int, str, str | None, datetime]]


@contextmanager
def world(
    directory: Path, households: int, seed: int, *, weight_shelf: bool = True
) -> Iterator[tuple[World, CloudService]]:
    (directory / "mosquitto").mkdir(parents=True)
    with running_mosquitto(directory / "mosquitto") as broker:
        clock = ManualClock(START)
        cloud = CloudService(
            CloudSettings(
                database_url=f"sqlite:///{directory / 'cloud.db'}",
                mqtt=broker.mqtt(),
                http_port=0,
                client_id="sim-cloud",
                auto_enroll=True,
            ),
            clock,
            serve_http=False,
        )
        cloud.start()
        assert cloud.subscriber.wait_connected(10)
        homes = World(
            households, broker.mqtt(), directory / "fridges", clock, seed=seed, weight_shelf=weight_shelf
        )
        homes.start()
        try:
            yield homes, cloud
        finally:
            homes.stop()
            cloud.stop()


def stored(cloud: CloudService) -> Stream:
    with cloud.engine.connect() as connection:
        rows = connection.execute(
            select(
                EVENTS.c.device_id, EVENTS.c.seq, EVENTS.c.type, EVENTS.c.code, EVENTS.c.occurred_at
            ).order_by(EVENTS.c.device_id, EVENTS.c.seq)
        ).all()
    return [(str(d), int(s), str(t), c, o) for d, s, t, c, o in rows]


def test_a_fortnight_reaches_the_cloud_whole_and_in_virtual_time(tmp_path: Path) -> None:
    # Without the weight shelf every action is a scan, so the fridge and the household must agree.
    with world(tmp_path, households=3, seed=1, weight_shelf=False) as (homes, cloud):
        report: WorldReport = homes.run(14)
        events = stored(cloud)

    assert report.refused == 0
    assert report.events > 50
    assert len(events) == report.events  # every recorded event stored, once
    for device in {d for d, *_ in events}:
        seqs = [s for d, s, *_ in events if d == device]
        assert seqs == list(range(1, len(seqs) + 1))
    moments = [o.replace(tzinfo=UTC) if o.tzinfo is None else o for *_, o in events]
    assert min(moments) >= START
    assert max(moments) <= datetime(2026, 1, 19, tzinfo=UTC)  # the last day ends with a poll at midnight


def test_the_weight_shelf_reports_what_was_poured_and_what_was_taken_away(tmp_path: Path) -> None:
    with world(tmp_path, households=3, seed=1) as (homes, cloud):
        report = homes.run(14)
        with cloud.engine.connect() as connection:
            payloads = connection.execute(select(EVENTS.c.payload)).scalars().all()
        detail = [a.settings.consent.allows("consumption_detail") for a in homes.agents]

    events = [json.loads(p) for p in payloads]
    by_weight = [e for e in events if e["type"] == "item_consumed" and e["source"] == "weight"]
    assert len(events) == report.events
    assert any(detail)
    assert len(by_weight) > 20  # partial uses weighed, and empty bottles taken away
    assert {e["unit"] for e in by_weight} <= {"g", "ml"}
    # The shelf's inference can disagree with the household now and then; rarely.
    assert report.refused <= 0.01 * sum(d.actions for d in report.days)


def test_the_same_seed_gives_the_same_event_stream(tmp_path: Path) -> None:
    streams = []
    for run in ("a", "b"):
        with world(tmp_path / run, households=2, seed=4) as (homes, cloud):
            homes.run(7)
            streams.append(stored(cloud))

    assert streams[0] == streams[1]
    assert len(streams[0]) > 20


def test_chaos_for_30_days_loses_and_doubles_nothing(tmp_path: Path) -> None:
    from simulator.mosquitto import mosquitto_binary
    from simulator.runner import run_scenario
    from simulator.scenario import load_scenario
    from tests.support.services import require_mosquitto

    require_mosquitto()
    assert mosquitto_binary() is not None  # the run starts its own, restartable Mosquitto
    chaos = load_scenario("chaos")
    summary = run_scenario(chaos, tmp_path / "report")

    assert chaos.days == 30
    assert set(summary["faults"]) == set(FaultKind)
    assert all(count > 0 for count in summary["faults"].values())
    assert summary["actions_refused"] <= 0.01 * summary["actions"]  # the shelf's guesses, now and then
    assert summary["events_stored"] == summary["events_recorded"] > 500
    # Each fridge's events are stored exactly once: numbered 1..n with no gap and no repeat.
    with sqlite3.connect(tmp_path / "report" / "cloud.db") as db:
        rows = db.execute("SELECT device_id, seq FROM events ORDER BY device_id, seq").fetchall()
    by_device: dict[str, list[int]] = {}
    for device, seq in rows:
        by_device.setdefault(device, []).append(seq)
    assert len(by_device) == chaos.households
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_device.values())
    retailer = summary["retailer"]
    assert retailer["delivered"] > 0
    assert retailer["failed"] > 0
    assert retailer["lines_substituted"] > 0
    # The report: truth, orders, the cloud's forecast of the watched fridges, and the plots.
    report = tmp_path / "report"
    forecast = (report / "forecast.csv").read_text().splitlines()
    assert forecast[0] == "day,device_id,code,stock_p50,stock_p10,stock_p90"
    assert len(forecast) > chaos.days * 10
    assert sorted(p.name for p in (report / "plots").iterdir()) == [
        "offers.png",
        "orders.png",
        "stock.png",
        "stockouts.png",
        "waste.png",
    ]


class CountingDoor(SimulatedDoor):
    """A door that counts its openings."""

    def __init__(self) -> None:
        super().__init__()
        self.openings = 0

    def open(self) -> None:
        self.openings += 1
        super().open()


class RecordingThermometer(SimulatedThermometer):
    """A probe that remembers what it was set to."""

    def __init__(self, sensor_id: str, celsius: float) -> None:
        super().__init__(sensor_id, celsius)
        self.settings: list[float] = []

    def set(self, celsius: float) -> None:
        self.settings.append(celsius)
        super().set(celsius)


def test_households_open_the_door_and_warm_the_fridge_for_what_they_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("simulator.world.SimulatedDoor", CountingDoor)
    monkeypatch.setattr("simulator.world.SimulatedThermometer", RecordingThermometer)
    with world(tmp_path, households=2, seed=2) as (homes, _cloud):
        report = homes.run(3)
        doors = [door for door in homes.doors if isinstance(door, CountingDoor)]
        probes = [probe for probe in homes.thermometers if isinstance(probe, RecordingThermometer)]

    assert len(doors) == len(probes) == 2
    actions = sum(day.actions for day in report.days)
    openings = sum(door.openings for door in doors)
    assert 0 < openings < actions  # a bag of shopping is put away in one opening
    assert not any(door.is_open() for door in doors)
    for probe in probes:
        warm, cold = probe.settings[0::2], probe.settings[1::2]
        assert len(warm) == len(cold) > 0
        assert all(w > c for w, c in zip(warm, cold, strict=True))  # warmer after the door was open
        assert all(3.5 <= c <= 5.0 for c in cold)
