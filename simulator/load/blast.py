"""A blast of events: paho device connections publishing ready-made events at QoS 1, all at once.

Unlike the fleet of virtual fridges (``simulator/fleet.py``, the real edge agent), these
connections do nothing but publish pre-encoded ``item_added`` events and record when the cloud
acknowledges each one: enough to load a broker and the cloud with thousands of events per second
from one process, and to time publish → acknowledgement. ``bench/ingest.py`` drives it. The
swarm (:mod:`simulator.load.swarm`) is the other load: thousands of connections at a steady rate.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared import topics
from shared.messages import EventsAcknowledged, ItemAdded, decode_command, encode
from shared.mqtt import release


class Devices:
    """Device connections publishing pre-encoded events and collecting the cloud's acks."""

    def __init__(self, port: int, prefix: str, count: int) -> None:
        self.ids = [f"{prefix}-{n:03d}" for n in range(count)]
        self.acked: dict[str, set[int]] = {d: set() for d in self.ids}
        self.ack_times: dict[tuple[str, int], float] = {}
        self.last_ack = 0.0
        self._lock = threading.Lock()
        self.clients: dict[str, mqtt.Client] = {}
        for device_id in self.ids:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(100)
            client.on_message = self._on_ack
            client.connect("127.0.0.1", port)
            client.subscribe(topics.commands(device_id), qos=1)
            client.loop_start()
            self.clients[device_id] = client

    def _on_ack(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        command = decode_command(bytes(message.payload))
        if not isinstance(command, EventsAcknowledged):
            return
        with self._lock:
            for first, last in command.ranges:
                for seq in range(first, last + 1):
                    if seq not in self.acked[command.device_id]:
                        self.acked[command.device_id].add(seq)
                        self.ack_times[(command.device_id, seq)] = now
            self.last_ack = now

    def wait_published(self, timeout: float) -> None:
        """Wait until the broker has every published message (no pending outgoing publishes)."""
        deadline = time.time() + timeout
        while any(c.want_write() or len(c._out_messages) for c in self.clients.values()):
            if time.time() > deadline:
                raise TimeoutError("the broker did not take every message")
            time.sleep(0.05)

    def acked_count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self.acked.values())

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
            release(client)


def payloads(device_id: str, count: int) -> list[bytes]:
    now = datetime.now(UTC)
    return [
        encode(
            ItemAdded(
                event_id=uuid.uuid4(),
                device_id=device_id,
                seq=seq,
                occurred_at=now,
                code="4006381333931",
                lot_id=seq,
            )
        )
        for seq in range(1, count + 1)
    ]


def blast(devices: Devices, per_device: int) -> float:
    """Publish every device's events as fast as the connections take them; return the start time."""
    batches = {d: payloads(d, per_device) for d in devices.ids}
    started = time.time()
    for seq in range(per_device):
        for device_id in devices.ids:
            devices.clients[device_id].publish(topics.events(device_id), batches[device_id][seq], qos=1)
    return started
