"""The agent's delivery guarantee through broker restarts, crashes and a long partition."""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.db.tables import EVENTS
from cloud.service import CloudService
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.clock import ManualClock
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto

CODES = ["4006381333931", "96385074", "036000291452", "2000000000015"]


def stored_seqs(cloud: CloudService, device_id: str) -> list[int]:
    """Return the device's stored seqs in the order the cloud stored them."""
    with cloud.engine.connect() as conn:
        rows = conn.execute(select(EVENTS.c.seq).where(EVENTS.c.device_id == device_id).order_by(EVENTS.c.id))
        return [int(r[0]) for r in rows]


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.mosquitto
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_broker_restarted_20_times_and_killed_5_times_during_10k_events(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    total = 10_000
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    settings = EdgeSettings(
        device_id="resilient", data_dir=tmp_path / "agent", mqtt=mosquitto.mqtt(), resend_after_s=2
    )
    agent = Agent(settings)
    agent.start(poll=False)
    recorded = 0

    def stream() -> None:
        nonlocal recorded
        for n in range(total):
            agent.scan(f"+{CODES[n % len(CODES)]}")
            recorded += 1

    streamer = threading.Thread(target=stream)
    streamer.start()
    rng = random.Random(3)
    disruptions = [signal.SIGTERM] * 20 + [signal.SIGKILL] * 5
    rng.shuffle(disruptions)
    try:
        for index, sig in enumerate(disruptions):
            # Spread the disruptions over the stream: the next one once enough more is recorded.
            mark = (index + 1) * total // (len(disruptions) + 1)
            wait_for(lambda mark=mark: recorded >= mark, 60)
            mosquitto.restart(sig)
        streamer.join(120)
        assert recorded == total
        assert agent.wait_drained(timeout=120), f"{agent.outbox_depth()} events never acknowledged"
    finally:
        streamer.join(5)
        agent.stop()
    seqs = stored_seqs(cloud, "resilient")
    assert len(seqs) == total, "events lost or stored twice"
    assert sorted(seqs) == list(range(1, total + 1)), "a gap in the device's seq"
    assert cloud.ingestor.stats.stored == total


@pytest.mark.mosquitto
@pytest.mark.timeout(180)
def test_hour_long_partition_drains_in_order_within_a_minute_of_reconnecting(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    # With persistence, as the README asks for production, the cloud's subscription outlives the
    # restart: whichever of cloud and agent reconnects first, nothing is published to nobody.
    # (Without it, an agent back before the cloud publishes into the void and resends later.)
    mosquitto.stop()
    mosquitto.persistence = True
    mosquitto.start()
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    settings = EdgeSettings(device_id="partitioned", data_dir=tmp_path / "agent", mqtt=mosquitto.mqtt())
    agent = Agent(settings, clock=clock)
    agent.start(poll=False)
    try:
        assert agent.uplink.wait_connected(10)
        agent.scan(f"+{CODES[0]}")
        assert agent.wait_drained(timeout=10)
        mosquitto.stop()
        # One hour offline at one event per second, on an accelerated clock.
        for n in range(3600):
            clock.advance(timedelta(seconds=1))
            code = CODES[(n // 2) % len(CODES)]
            agent.scan(f"-{code}" if n % 2 else f"+{code}")
        assert agent.outbox_depth() == 3600
        mosquitto.start()
        assert agent.uplink.wait_connected(90), "the agent did not reconnect"
        reconnected = time.monotonic()
        assert wait_for(lambda: len(stored_seqs(cloud, "partitioned")) == 3601, 60), (
            f"only {len(stored_seqs(cloud, 'partitioned'))} of 3601 events within 60 s of reconnecting"
        )
        elapsed = time.monotonic() - reconnected
    finally:
        agent.stop()
    seqs = stored_seqs(cloud, "partitioned")
    assert seqs == list(range(1, 3602)), "events stored out of seq order"
    assert elapsed < 60
