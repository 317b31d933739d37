"""A poison message on one device's topic never stalls the fleet: through Mosquitto and the embedded
broker, published live or retained, it ends as a dead letter with its reason, the cloud stays ready,
and another device's event published after it is stored and acknowledged."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlmodel import Session

from cloud.identity.tokens import issue_token
from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from shared import topics
from shared.messages import EventsAcknowledged, ItemAdded, decode_command, encode
from shared.mqtt import MqttSettings, release
from tests.conftest import CloudFactory
from tests.support.services import free_port, running_mosquitto

POISONER = "fridge-poisoner"
NEIGHBOUR = "fridge-neighbour"
WAIT_S = 15.0


def event(device: str, seq: int) -> bytes:
    return encode(
        ItemAdded(
            event_id=uuid.uuid4(),
            device_id=device,
            seq=seq,
            lot_id=seq,
            occurred_at=datetime.now(UTC),
            code="4006381333931",
        )
    )


def batch_of(device: str, count: int) -> bytes:
    """Return an event batch of ``count`` valid events: over 100 is over the contract's limit."""
    events = b",".join(event(device, seq) for seq in range(1, count + 1))
    head = b'{"schema_version":1,"type":"event_batch","device_id":"' + device.encode() + b'","events":['
    return head + events + b"]}"


POISONS = {
    "nested-100000": b"[" * 100_000 + b"]" * 100_000,
    "invalid-utf8": b'{"schema_version":1,"type":"item_added","code":"\xff\xfe\xfd"}',
    "number-5000-digits": b'{"schema_version":1,"type":"item_added","seq":' + b"9" * 5000 + b"}",
    "batch-of-101": batch_of(POISONER, 101),
}


@pytest.fixture(params=[pytest.param("mosquitto", marks=pytest.mark.mosquitto), "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MqttSettings]:
    """Mosquitto (MQTT 5) or the embedded broker (MQTT 3.1.1), each on a free port of its own."""
    if request.param == "mosquitto":
        directory = tmp_path / "mosquitto"
        directory.mkdir()
        with running_mosquitto(directory) as mosquitto:
            yield mosquitto.mqtt()
        return
    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port)
    embedded.start()
    try:
        yield MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1")
    finally:
        embedded.stop()


class Device:
    """A device's raw MQTT connection: publishes what the test gives it, collects its acks."""

    def __init__(self, settings: MqttSettings, device_id: str) -> None:
        protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=protocol)
        self.acks: queue.Queue[EventsAcknowledged] = queue.Queue()
        self.client.on_message = self._on_message
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()
        self.device_id = device_id

    def listen(self) -> None:
        result, mid = self.client.subscribe(topics.commands(self.device_id), qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None

    def publish(self, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topics.events(self.device_id), payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        release(self.client)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        command = decode_command(bytes(message.payload))
        if isinstance(command, EventsAcknowledged):
            self.acks.put(command)


def retained_on(settings: MqttSettings, topic: str) -> bytes | None:
    """Return the retained payload the broker holds on ``topic``, or None (waits briefly)."""
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    found: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"look-{uuid.uuid4().hex[:6]}", protocol=protocol
    )
    client.on_message = lambda _c, _u, message: found.put(bytes(message.payload)) if message.retain else None
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        return found.get(timeout=1.0)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()
        release(client)


def operator_token(cloud: CloudService) -> str:
    with Session(cloud.engine) as session:
        token = issue_token(session, "admin", None, datetime.now(UTC))
        session.commit()
    return token


def wait_for_dead_letter(cloud: CloudService, token: str, reason: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT_S
    while True:
        response = httpx.get(
            f"{cloud.url}/admin/dead-letters",
            params={"device_id": POISONER},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        letters: list[dict[str, object]] = response.json()
        if any(letter["reason"] == reason for letter in letters) or time.monotonic() > deadline:
            return letters
        time.sleep(0.05)


@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("retained", ["no", "live", "before-the-cloud"])
def test_a_poison_message_never_stalls_another_device(
    broker: MqttSettings, start_cloud: CloudFactory, tmp_path: Path, poison: str, retained: str
) -> None:
    poisoner = Device(broker, POISONER)
    neighbour = Device(broker, NEIGHBOUR)
    try:
        if retained == "before-the-cloud":
            # Waiting on the broker for every new subscription: the cloud gets it as it subscribes.
            poisoner.publish(POISONS[poison], retain=True)
        cloud = start_cloud(broker, f"sqlite:///{tmp_path / 'cloud.db'}", auto_enroll=True)
        token = operator_token(cloud)
        neighbour.listen()
        if retained != "before-the-cloud":
            poisoner.publish(POISONS[poison], retain=retained == "live")
        neighbour.publish(event(NEIGHBOUR, 1))
        ack = neighbour.acks.get(timeout=WAIT_S)

        assert ack == EventsAcknowledged(device_id=NEIGHBOUR, ranges=((1, 1),))
        # Retained before the cloud subscribed, it arrives flagged as retained: kept, not ingested.
        reason = "retained" if retained == "before-the-cloud" else "invalid_payload"
        letters = wait_for_dead_letter(cloud, token, reason)
        assert [letter["reason"] for letter in letters] == [reason], letters
        assert letters[0]["topic"] == topics.events(POISONER)
        assert letters[0]["detail"]
        ready = httpx.get(f"{cloud.url}/readyz")
        assert ready.status_code == 200, ready.text
        assert cloud.ingestor.stats.stored == 1
        if retained == "before-the-cloud":
            # The cloud cleared it: the next subscriber (a restarted worker) does not get it again.
            deadline = time.monotonic() + WAIT_S
            while retained_on(broker, topics.events(POISONER)) is not None:
                assert time.monotonic() < deadline, "the retained poison is still on the broker"
        # The cloud's own clearing comes back as an empty message: dropped, not a second dead letter.
        assert cloud.ingestor.stats.rejected_total == 1
    finally:
        poisoner.close()
        neighbour.close()
