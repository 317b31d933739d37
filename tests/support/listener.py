"""A fridge reduced to its command subscription: it notes when each command arrives."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt

from shared import topics
from shared.messages import Command, decode_command
from shared.mqtt import MqttSettings, create_client, release


class CommandListener:
    """Subscribe to a device's command topic at QoS 1; hand out (arrival, command) pairs in order,
    the arrival as ``time.monotonic()``."""

    def __init__(self, settings: MqttSettings, device_id: str, timeout: float = 10.0) -> None:
        self._arrived: queue.Queue[tuple[float, Command]] = queue.Queue()
        subscribed = threading.Event()
        self._client, properties = create_client(settings, f"{device_id}-listener", persistent=False)

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe(topics.commands(device_id), qos=1)

        def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            self._arrived.put((time.monotonic(), decode_command(bytes(message.payload))))

        self._client.on_connect = on_connect
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = on_message
        self._client.connect(settings.host, settings.port, properties=properties)
        self._client.loop_start()
        if not subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no SUBACK for {device_id}'s commands within {timeout} s")

    def next(self, timeout: float) -> tuple[float, Command]:
        """Return the next command and when it arrived; raise queue.Empty if none comes in time."""
        return self._arrived.get(timeout=timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        release(self._client)
