"""The load generator against a real Mosquitto and cloud worker: every event stored once, acked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from simulator.load.blast import Devices, blast, payloads
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto

pytestmark = pytest.mark.mosquitto


def test_payloads_are_distinct_events_in_sequence() -> None:
    events = payloads("load-000", 3)

    assert len(set(events)) == 3
    assert [b'"seq":1' in events[0], b'"seq":2' in events[1], b'"seq":3' in events[2]] == [True] * 3


def test_every_published_event_is_stored_once_and_acknowledged(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    devices = Devices(mosquitto.port, "load", 3)
    try:
        blast(devices, 50)
        devices.wait_published(30)
        deadline = time.monotonic() + 30
        while devices.acked_count() < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        devices.close()

    assert devices.acked == {d: set(range(1, 51)) for d in ("load-000", "load-001", "load-002")}
    assert cloud.ingestor.stats.stored == 150
    assert len(devices.ack_times) == 150
