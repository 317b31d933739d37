"""The agent's MQTT link: drains the outbox to the broker and prunes it on the cloud's acks.

Three threads: the network thread connects, reconnects with jittered back-off (1 s → 60 s) and
serves the socket; paho's callbacks hand acknowledgements, commands and desired configuration
over; the worker owns publishing and outbox pruning. Events go out in sequence order, at most
``window`` unacknowledged at once (paho's message ids wrap at 65,535). Whatever the cloud has not
acknowledged is published again after every reconnect, and after ``resend_after_s`` without
progress (doubling up to ``MAX_RESEND_AFTER_S``): the cloud stores each event once, so a repeat
costs only bandwidth. Telemetry samples leave their buffer on the broker's PUBACK.

A broker that cannot be reached is tried again for ever (the fridge works offline); a refusal no
retry changes (a protocol the broker does not speak, bad credentials) ends the attempts and goes to
``on_refused``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.database import open_database
from edge.outbox import Outbox
from edge.telemetry import TelemetryBuffer
from shared import topics
from shared.clock import Clock
from shared.errors import BrokerRefused, InvalidMessage
from shared.messages import (
    MAX_BATCH,
    AvailabilityChanged,
    Command,
    ConfigDesired,
    EventsAcknowledged,
    SeqRange,
    decode_command,
    decode_config,
    encode,
    encode_batch,
)
from shared.mqtt import MqttSettings, create_client, run_network_loop

log = logging.getLogger(__name__)

# Idle wake-up of the worker: how quickly a stop request or a lost connection is noticed; a
# Pi idles at well under 1 % CPU with this.
IDLE_WAKE_S = 0.5
# Ceiling for the resend back-off while the cloud stays silent: a long outage costs one burst
# every five minutes, not a flood.
MAX_RESEND_AFTER_S = 300.0
# Telemetry samples published per worker round; telemetry must never crowd out events.
TELEMETRY_BATCH = 100


class Uplink:
    """Publish recorded events until the cloud acknowledges them."""

    def __init__(
        self,
        *,
        device_id: str,
        mqtt_settings: MqttSettings,
        db_path: Path,
        clock: Clock,
        power_safe: bool = True,
        resend_after_s: float = 10.0,
        window: int = 1000,
        linger_s: float = 0.0,
        on_command: Callable[[Command], None] | None = None,
        on_config: Callable[[ConfigDesired], None] | None = None,
        on_refused: Callable[[BrokerRefused], None] | None = None,
    ) -> None:
        self.device_id = device_id
        if mqtt_settings.username is None:
            # The contract: a device's MQTT username is its device id (broker ACLs rely on it).
            mqtt_settings = mqtt_settings.model_copy(update={"username": device_id})
        self._settings = mqtt_settings
        self._db_path = db_path
        self._power_safe = power_safe
        self._clock = clock
        self._resend_after_s = resend_after_s
        self._window = window
        self._linger_s = linger_s
        self._new_since: float | None = None  # monotonic time of the oldest unannounced event
        self._on_command = on_command
        self._on_config = on_config
        self._on_refused = on_refused
        self.refused: BrokerRefused | None = None  # why the broker will not have this device, if so
        self._commands_topic = topics.commands(device_id)
        self._config_topic = topics.desired_config(device_id)
        self._acks: queue.SimpleQueue[tuple[SeqRange, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._reconnected = False
        self._threads: list[threading.Thread] = []
        self.published = 0
        self.acknowledged = 0
        self.connected_at: float | None = None  # monotonic time of the first connection

        self._client, self._connect_properties = create_client(mqtt_settings, device_id, persistent=True)
        offline = AvailabilityChanged(device_id=device_id, state="offline", since=clock.now())
        self._client.will_set(topics.availability(device_id), encode(offline), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        """Return whether the broker connection is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected; False if ``timeout`` ran out first."""
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Connect in the background and start draining the outbox."""
        self._threads = [
            threading.Thread(
                target=run_network_loop,
                args=(self._client, self._settings, self._connect_properties),
                kwargs={"persistent": True, "stop": self._stopping, "on_refused": self._refused},
                name=f"mqtt-{self.device_id}",
                daemon=True,
            ),
            threading.Thread(target=self._run, name=f"uplink-{self.device_id}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def notify(self) -> None:
        """Tell the worker new events wait in the outbox."""
        if self._new_since is None:
            self._new_since = time.monotonic()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline, disconnect and stop; unsent events stay in the outbox."""
        if self._connected.is_set():
            offline = AvailabilityChanged(device_id=self.device_id, state="offline", since=self._clock.now())
            self._client.publish(topics.availability(self.device_id), encode(offline), qos=1, retain=True)
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # paho's callbacks, on the network thread ---------------------------------------------------

    def _refused(self, error: BrokerRefused) -> None:
        self.refused = error
        if self._on_refused is not None:
            self._on_refused(error)
        else:
            log.error("%s: %s", self.device_id, error)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            # The network loop decides whether to try again, and says so if not.
            log.info("broker refused %s: %s", self.device_id, reason)
            return
        client.subscribe([(self._commands_topic, 1), (self._config_topic, 1)])
        online = AvailabilityChanged(device_id=self.device_id, state="online", since=self._clock.now())
        client.publish(topics.availability(self.device_id), encode(online), qos=1, retain=True)
        self._reconnected = True
        if self.connected_at is None:
            self.connected_at = time.monotonic()
        self._connected.set()
        self._wake.set()
        log.info("%s connected to %s:%s", self.device_id, self._settings.host, self._settings.port)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        # Only a connection that was up is lost; a refused CONNECT ends here too, said elsewhere.
        if was_connected and not self._stopping.is_set():
            log.warning("%s lost the broker (%s); reconnecting", self.device_id, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._config_topic:
                if message.payload and self._on_config is not None:
                    self._on_config(decode_config(bytes(message.payload)))
                return
            if message.topic != self._commands_topic:
                # amqtt sometimes replays other topics into a persistent session; not ours to read.
                log.debug("ignoring message on %s", message.topic)
                return
            command = decode_command(bytes(message.payload))
        except InvalidMessage as exc:
            log.warning("ignoring invalid message on %s: %s", message.topic, exc.reason)
            return
        if isinstance(command, EventsAcknowledged):
            self._acks.put(command.ranges)
            self._wake.set()
        elif self._on_command is not None:
            self._on_command(command)
        else:
            log.info("%s received %s; nothing here handles it", self.device_id, command.type)

    # the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        conn = open_database(self._db_path, power_safe=self._power_safe)
        try:
            self._drain_loop(Outbox(conn), TelemetryBuffer(conn))
        finally:
            conn.close()

    def _drain_loop(self, outbox: Outbox, telemetry: TelemetryBuffer) -> None:
        inflight: dict[int, float] = {}  # seq -> monotonic time it was published
        cursor = 0  # highest seq published since the last reset
        resend_after = self._resend_after_s
        samples: dict[int, mqtt.MQTTMessageInfo] = {}  # telemetry id -> its publish, until PUBACK
        events_topic = topics.events(self.device_id)
        telemetry_topic = topics.telemetry(self.device_id)
        while not self._stopping.is_set():
            self._wake.wait(IDLE_WAKE_S)
            self._wake.clear()
            if self._new_since is not None and self._linger_s > 0:
                # A burst (a bag of shopping scanned in) leaves as one batch: wait for the rest of it.
                self._stopping.wait(max(self._new_since + self._linger_s - time.monotonic(), 0.0))
            self._new_since = None
            if self._apply_acks(outbox, inflight):
                resend_after = self._resend_after_s
            if not self._connected.is_set():
                samples.clear()
                continue
            now = time.monotonic()
            if self._reconnected:
                self._reconnected = False
                inflight.clear()
                samples.clear()
                cursor = 0
            elif inflight and now - next(iter(inflight.values())) > resend_after:
                log.info(
                    "%s: no ack for %d events in %.0f s; sending again",
                    self.device_id,
                    len(inflight),
                    resend_after,
                )
                inflight.clear()
                cursor = 0
                resend_after = min(resend_after * 2, MAX_RESEND_AFTER_S)
            room = self._window - len(inflight)
            if room > 0:
                rows = outbox.pending(after=cursor, limit=room)
                # A backlog goes out in batches: far fewer messages and PUBACKs per event.
                for start in range(0, len(rows), MAX_BATCH):
                    chunk = rows[start : start + MAX_BATCH]
                    payload = (
                        chunk[0][1]
                        if len(chunk) == 1
                        else encode_batch(self.device_id, [p for _, p in chunk])
                    )
                    self._client.publish(events_topic, payload, qos=1)
                    for seq, _ in chunk:
                        inflight[seq] = now
                    cursor = chunk[-1][0]
                    self.published += len(chunk)
            self._drain_telemetry(telemetry, samples, telemetry_topic)

    def _drain_telemetry(
        self, telemetry: TelemetryBuffer, samples: dict[int, mqtt.MQTTMessageInfo], topic: str
    ) -> None:
        done = [sample_id for sample_id, info in samples.items() if info.is_published()]
        if done:
            telemetry.remove(done)
            for sample_id in done:
                del samples[sample_id]
        if samples:
            return  # one batch at a time
        for sample_id, payload in telemetry.pending(TELEMETRY_BATCH):
            samples[sample_id] = self._client.publish(topic, payload, qos=1)

    def _apply_acks(self, outbox: Outbox, inflight: dict[int, float]) -> bool:
        progressed = False
        while True:
            try:
                ranges = self._acks.get_nowait()
            except queue.Empty:
                return progressed
            self.acknowledged += outbox.acknowledge(ranges)
            for first, last in ranges:
                for seq in [s for s in inflight if first <= s <= last]:
                    del inflight[seq]
            progressed = True
