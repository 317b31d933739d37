"""Consent at the edge, seen from the broker: what the household did not allow never leaves."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import Agent, Sensors
from edge.consent import ConsentSettings
from edge.settings import EdgeSettings
from shared import topics
from shared.clock import ManualClock
from shared.messages import CatalogUpdated, ProductInfo
from shared.mqtt import release
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto

MILK = "4006381333931"


class FakeShelf:
    """A shelf whose load the test sets."""

    shelf_id = "middle"

    def __init__(self) -> None:
        self.grams = 0.0

    def read_grams(self) -> float:
        return self.grams


def household_day(agent: Agent, shelf: FakeShelf, clock: ManualClock) -> None:
    """Scan milk in, shelve it, open it, pour a quarter, put it back, then finish it."""

    def step(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))
        agent.poll_once()

    agent.handle_command(
        CatalogUpdated(
            device_id=agent.device_id,
            products=(ProductInfo(code=MILK, name="Milk 1 l", unit_grams=1000, opened_shelf_life_days=3),),
        )
    )
    step(1)
    agent.scan(f"+{MILK}")
    shelf.grams = 1000
    step(5)
    agent.scan(f"open {MILK}")
    shelf.grams = 0  # taken out
    step(5)
    shelf.grams = 750  # put back lighter: 250 g poured
    step(60)
    agent.scan(f"-{MILK}")
    step(1)


@pytest.mark.mosquitto
@pytest.mark.parametrize("detail_allowed", [False, True], ids=["detail-excluded", "detail-allowed"])
def test_broker_subscriber_sees_no_consumption_detail_without_consent(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path, detail_allowed: bool
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    seen: list[dict[str, Any]] = []
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy", protocol=mqtt.MQTTv5)
    spy.on_message = lambda _c, _u, m: seen.append({"topic": m.topic, **json.loads(m.payload)})
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe(f"{topics.PREFIX}/+/#", qos=1)
    spy.loop_start()
    share = {"inventory", "telemetry"} | ({"consumption_detail"} if detail_allowed else set())
    settings = EdgeSettings(
        device_id="private",
        data_dir=tmp_path / "agent",
        mqtt=mosquitto.mqtt(),
        consent=ConsentSettings(share=frozenset(share)),
    )
    clock = ManualClock(datetime(2026, 11, 23, 18, 30, 15, tzinfo=UTC))
    shelf = FakeShelf()
    agent = Agent(settings, clock=clock, sensors=Sensors(shelves=[shelf]))
    agent.start(poll=False)
    try:
        household_day(agent, shelf, clock)
        assert agent.wait_drained(timeout=20)
        time.sleep(0.3)  # the spy's copies arrive alongside the cloud's
    finally:
        agent.stop()
        spy.disconnect()
        spy.loop_stop()
        release(spy)

    # A backlog may leave in batches: what the spy saw, event by event.
    events: list[dict[str, Any]] = []
    for message in seen:
        if message["topic"] == topics.events("private"):
            events += message["events"] if message["type"] == "event_batch" else [message]
    types = [e["type"] for e in events]
    consumed = [e for e in events if e["type"] == "item_consumed"]
    assert types.count("item_added") == 1
    assert cloud.ingestor.stats.stored == len(events)
    if detail_allowed:
        assert "item_opened" in types
        assert [c["quantity"] for c in consumed] == pytest.approx([0.25, 0.75])
        assert [c["source"] for c in consumed] == ["weight", "scan"]
    else:
        assert "item_opened" not in types
        # One use for the whole lot, by the day: no partial amount, no time of day.
        assert [c["quantity"] for c in consumed] == pytest.approx([1.0])
        assert all(c["occurred_at"].endswith("T00:00:00Z") for c in consumed)
