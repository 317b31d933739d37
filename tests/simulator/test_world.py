"""A world of households on real agents, a real Mosquitto and a cloud worker, on one virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.models import EVENTS
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.clock import ManualClock
from simulator.world import World, WorldReport
from tests.support.services import running_mosquitto

pytestmark = pytest.mark.mosquitto

START = datetime(2026, 1, 5, tzinfo=UTC)
Stream = list[tuple[str, int, str, str | None, datetime]]


@contextmanager
def world(directory: Path, households: int, seed: int) -> Iterator[tuple[World, CloudService]]:
    (directory / "mosquitto").mkdir(parents=True)
    with running_mosquitto(directory / "mosquitto") as broker:
        clock = ManualClock(START)
        cloud = CloudService(
            CloudSettings(
                database_url=f"sqlite:///{directory / 'cloud.db'}",
                mqtt=broker.mqtt(),
                http_port=0,
                client_id="sim-cloud",
            ),
            clock,
            serve_http=False,
        )
        cloud.start()
        assert cloud.subscriber.wait_connected(10)
        homes = World(households, broker.mqtt(), directory / "fridges", clock, seed=seed)
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
    with world(tmp_path, households=3, seed=1) as (homes, cloud):
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
    assert max(moments) < datetime(2026, 1, 19, tzinfo=UTC)


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
    assert set(summary["faults"]) == {"broker_restart", "power_loss", "malformed"}
    assert all(count > 0 for count in summary["faults"].values())
    assert summary["actions_refused"] == 0
    assert summary["events_stored"] == summary["events_recorded"] > 500
