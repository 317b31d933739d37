"""Bad payloads through a real broker never stop the cloud: logged, counted, and the next one stored."""

from __future__ import annotations

import queue
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from shared import topics
from shared.messages import EventsAcknowledged, ItemAdded, decode_command, encode
from shared.mqtt import release
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto

DEVICE = "fridge-bad"


def valid_event(seq: int) -> bytes:
    return encode(
        ItemAdded(
            event_id=uuid.uuid4(),
            device_id=DEVICE,
            seq=seq,
            lot_id=seq,
            occurred_at=datetime.now(UTC),
            code="4006381333931",
        )
    )


BAD_PAYLOADS = {
    "malformed JSON": b'{"type": "item_added", "seq": ',
    "unknown type": valid_event(1).replace(b'"item_added"', b'"item_teleported"'),
    "unknown schema_version": valid_event(1).replace(b'"schema_version":1', b'"schema_version":2'),
    "not JSON at all": b"\xff\xfe\x00garbage",
}


@pytest.mark.mosquitto
def test_bad_payloads_are_counted_and_the_next_event_is_stored(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    acks: queue.Queue[EventsAcknowledged] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        command = decode_command(bytes(message.payload))
        assert isinstance(command, EventsAcknowledged)
        acks.put(command)

    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5)
    device.on_message = on_message
    device.connect("127.0.0.1", mosquitto.port)
    device.loop_start()
    try:
        device.subscribe(topics.commands(DEVICE), qos=1)
        # The writer process logs each rejection on its stderr, which it shares with this test.
        for payload in BAD_PAYLOADS.values():
            device.publish(topics.events(DEVICE), payload, qos=1).wait_for_publish(5)
        # A payload naming another device is refused: no device speaks for another.
        device.publish(topics.events(DEVICE), valid_event(1).replace(b"fridge-bad", b"fridge-other"), qos=1)
        device.publish(topics.events(DEVICE), valid_event(1), qos=1).wait_for_publish(5)
        ack = acks.get(timeout=10)
        deadline = time.monotonic() + 5
        while cloud.ingestor.stats.rejected_total < len(BAD_PAYLOADS) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        device.disconnect()
        device.loop_stop()
        release(device)

    assert ack == EventsAcknowledged(device_id=DEVICE, ranges=((1, 1),))
    stats = cloud.ingestor.stats
    assert stats.stored == 1
    assert dict(stats.rejected) == {"invalid_payload": len(BAD_PAYLOADS), "device_mismatch": 1}
    warnings = [line for line in capfd.readouterr().err.splitlines() if "WARNING cloud.ingest.batch:" in line]
    assert len(warnings) == len(BAD_PAYLOADS) + 1
    assert any("schema_version" in w for w in warnings), warnings
    assert any("item_teleported" in w or "tag" in w for w in warnings), warnings
    assert any("device_mismatch" in w for w in warnings), warnings
