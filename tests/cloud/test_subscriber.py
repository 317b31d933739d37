"""The cloud's MQTT connection bounds the acknowledgements that wait for the broker."""

from __future__ import annotations

import time

import pytest

from cloud.mqtt import subscriber
from cloud.mqtt.subscriber import Subscriber
from shared.messages import EventsAcknowledged
from shared.mqtt import MqttSettings
from tests.support.services import Mosquitto, free_port


def ack(device_id: str) -> EventsAcknowledged:
    return EventsAcknowledged(device_id=device_id, ranges=((1, 1),))


def test_acknowledgements_beyond_the_bound_wait_and_are_then_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriber, "MAX_UNSENT_ACKS", 3)
    monkeypatch.setattr(subscriber, "ACK_WAIT_S", 0.05)
    # No broker listens: nothing is ever PUBACKed.
    cloud = Subscriber(
        MqttSettings(host="127.0.0.1", port=free_port()), "bound-test", lambda _t, _p, _r: None
    )

    for n in range(5):
        cloud.acknowledge(ack(f"fridge-{n}"))

    assert (cloud.unsent_acks, cloud.dropped_acks) == (3, 2)


@pytest.mark.mosquitto
def test_acknowledgements_leave_the_count_once_the_broker_has_them(mosquitto: Mosquitto) -> None:
    cloud = Subscriber(mosquitto.mqtt(), "count-test", lambda _t, _p, _r: None)
    cloud.start()
    try:
        assert cloud.wait_connected(10)
        for n in range(50):
            cloud.acknowledge(ack(f"fridge-{n}"))
        deadline = time.monotonic() + 10
        while cloud.unsent_acks and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (cloud.unsent_acks, cloud.dropped_acks) == (0, 0)
    finally:
        cloud.stop()
