"""The cloud's MQTT connection: receives device messages, sends commands back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from shared import topics
from shared.errors import InvalidTopic
from shared.messages import EventsAcknowledged, encode
from shared.mqtt import MqttSettings, connect_in_background, create_client, release

log = logging.getLogger(__name__)

# Most acknowledgements handed to paho but not yet PUBACKed. paho's message ids wrap at 65,535 and
# it keeps unsent messages by id, so beyond that a new acknowledgement silently replaces an old one
# (seen at 5,000 events/s from 10,000 devices). Past the bound, ingestion waits for the broker.
MAX_UNSENT_ACKS = 20_000
# How long an acknowledgement waits for room before it is dropped; the device sends its events again.
ACK_WAIT_S = 30.0
# A retained message the cloud cleared comes back once, as an empty live message on the same topic:
# that echo is dropped if it arrives within this long. Bounded in count, so topics cannot pile up.
CLEARED_ECHO_S = 60.0
MAX_CLEARED = 10_000
# Device streams whose retained messages the cloud clears (availability is retained on purpose).
STREAMS = (topics.Channel.EVENTS, topics.Channel.TELEMETRY)


class Subscriber:
    """Subscribe to every device's events, availability and telemetry; publish commands."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        sink: Callable[[str, bytes, bool], None],
        *,
        shared_group: str | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._shared_group = shared_group
        self._connected = threading.Event()
        self._stopping = False
        # Persistent: while this worker restarts, the broker queues its QoS 1 messages.
        self._client, self._properties = create_client(settings, client_id, persistent=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._unsent = 0
        self._room = threading.Condition()
        self.dropped_acks = 0
        self._cleared: dict[str, float] = {}  # topic -> when its retained message was cleared
        self.cleared_retained = 0

    @property
    def connected(self) -> bool:
        """Return whether the broker connection is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed; False if ``timeout`` ran out first."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Connect in the background; reconnects on its own."""
        connect_in_background(self._client, self._settings, self._properties, persistent=True)

    def stop(self) -> None:
        """Disconnect for good, closing every socket the client holds."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        release(self._client)
        self._connected.clear()

    @property
    def unsent_acks(self) -> int:
        """Return how many acknowledgements wait for the broker's PUBACK."""
        with self._room:
            return self._unsent

    def acknowledge(self, ack: EventsAcknowledged) -> None:
        """Send a device the acknowledgement of its committed events; wait while too many are unsent."""
        with self._room:
            if not self._room.wait_for(lambda: self._unsent < MAX_UNSENT_ACKS, ACK_WAIT_S):
                self.dropped_acks += 1
                log.warning(
                    "dropped the acknowledgement of %s's events: %d acknowledgements wait for the "
                    "broker; the device will send them again",
                    ack.device_id,
                    self._unsent,
                )
                return
            self._unsent += 1
        self._client.publish(topics.commands(ack.device_id), encode(ack), qos=1)

    def publish_command(self, device_id: str, payload: bytes, timeout: float) -> bool:
        """Publish a command to a fridge at QoS 1; return whether the broker took it within ``timeout``."""
        if not self.connected:
            return False
        with self._room:
            if not self._room.wait_for(lambda: self._unsent < MAX_UNSENT_ACKS, timeout):
                return False
            self._unsent += 1
        info = self._client.publish(topics.commands(device_id), payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):  # not queued: the connection dropped
            return False
        return info.is_published()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, _mid: int, _reason: Any, _props: Any) -> None:
        # Everything is published at QoS 1 (acknowledgements and commands): each call is one PUBACK.
        with self._room:
            self._unsent -= 1
            self._room.notify_all()

    def _filters(self) -> list[tuple[str, int]]:
        wanted = [
            (topics.all_devices(topics.Channel.EVENTS), 1),
            (topics.all_devices(topics.Channel.AVAILABILITY), 1),
            (topics.all_devices(topics.Channel.TELEMETRY), 0),
        ]
        if self._shared_group is None:
            return wanted
        return [(topics.shared_subscription(self._shared_group, f), qos) for f, qos in wanted]

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the cloud's connection: %s", reason)
            return
        client.subscribe(self._filters())
        self._connected.set()
        log.info("cloud connected to %s:%s", self._settings.host, self._settings.port)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("cloud lost the broker (%s); reconnecting", reason)
        self._connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic, payload, retained = message.topic, bytes(message.payload), bool(message.retain)
        if not payload and self._cleared.pop(topic, None) is not None:
            return  # the echo of a retained message this worker cleared
        if retained and payload and _is_stream(topic):
            self._clear_retained(topic)
        self._sink(topic, payload, retained)

    def _clear_retained(self, topic: str) -> None:
        """Delete the retained message on a device's stream, which every new subscription would get
        again (a poison message, say); ingestion keeps it as a dead letter."""
        now = time.monotonic()
        if len(self._cleared) >= MAX_CLEARED:
            self._cleared = {t: at for t, at in self._cleared.items() if now - at < CLEARED_ECHO_S}
        if len(self._cleared) < MAX_CLEARED:
            self._cleared[topic] = now
        self.cleared_retained += 1
        log.warning("cleared the retained message on %s: devices' streams are not retained", topic)
        with self._room:
            self._unsent += 1  # its PUBACK comes through _on_publish like every other publish
        self._client.publish(topic, b"", qos=1, retain=True)


def _is_stream(topic: str) -> bool:
    """Return whether ``topic`` is a device's events or telemetry topic."""
    try:
        return topics.parse(topic).channel in STREAMS
    except InvalidTopic:
        return False
