"""The agent's MQTT link: drains the outbox to the broker and prunes it on the cloud's acks.

One worker thread owns the publishing and the outbox pruning; paho's network thread only hands
it acknowledgements. Events go out in sequence order, at most ``window`` unacknowledged at once
(paho's message ids wrap at 65,535). Whatever the cloud has not acknowledged is published again
after every reconnect, and after ``resend_after_s`` without progress (doubling up to
``MAX_RESEND_AFTER_S``): the cloud stores each event once, so a repeat costs only bandwidth.
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
from shared import topics
from shared.clock import Clock
from shared.errors import InvalidMessage
from shared.messages import (
    AvailabilityChanged,
    Command,
    EventsAcknowledged,
    SeqRange,
    TelemetryReported,
    decode_command,
    encode,
)
from shared.mqtt import MqttSettings, connect_in_background, create_client

log = logging.getLogger(__name__)

# Idle wake-up: how quickly a stop request or a lost connection is noticed; low enough CPU on a Pi.
IDLE_WAKE_S = 0.5
# Ceiling for the resend back-off while the cloud stays silent: a long outage costs one burst
# every five minutes, not a flood.
MAX_RESEND_AFTER_S = 300.0


class Uplink:
    """Publish recorded events until the cloud acknowledges them."""

    def __init__(
        self,
        *,
        device_id: str,
        mqtt_settings: MqttSettings,
        db_path: Path,
        clock: Clock,
        resend_after_s: float = 10.0,
        window: int = 1000,
        telemetry_interval_s: float = 60.0,
        on_command: Callable[[Command], None] | None = None,
    ) -> None:
        self.device_id = device_id
        self._settings = mqtt_settings
        self._db_path = db_path
        self._clock = clock
        self._resend_after_s = resend_after_s
        self._window = window
        self._telemetry_interval_s = telemetry_interval_s
        self._on_command = on_command
        self._commands_topic = topics.commands(device_id)
        self._started_at = time.monotonic()
        self._acks: queue.SimpleQueue[tuple[SeqRange, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._reconnected = False
        self._worker: threading.Thread | None = None
        self.published = 0
        self.acknowledged = 0

        if mqtt_settings.username is None:
            # The contract: a device's MQTT username is its device id (broker ACLs rely on it).
            mqtt_settings = mqtt_settings.model_copy(update={"username": device_id})
            self._settings = mqtt_settings
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

    def start(self) -> None:
        """Connect in the background and start draining the outbox."""
        connect_in_background(self._client, self._settings, self._connect_properties, persistent=True)
        self._worker = threading.Thread(target=self._run, name=f"uplink-{self.device_id}", daemon=True)
        self._worker.start()

    def notify(self) -> None:
        """Tell the worker new events wait in the outbox."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline, disconnect and stop the worker; unsent events stay in the outbox."""
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._connected.is_set():
            offline = AvailabilityChanged(device_id=self.device_id, state="offline", since=self._clock.now())
            info = self._client.publish(
                topics.availability(self.device_id), encode(offline), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                log.debug("offline state not delivered before disconnect")
        self._client.disconnect()
        self._client.loop_stop()

    # paho's network thread -------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused %s: %s", self.device_id, reason)
            return
        client.subscribe(self._commands_topic, qos=1)
        online = AvailabilityChanged(device_id=self.device_id, state="online", since=self._clock.now())
        client.publish(topics.availability(self.device_id), encode(online), qos=1, retain=True)
        self._reconnected = True
        self._connected.set()
        self._wake.set()
        log.info("%s connected to %s:%s", self.device_id, self._settings.host, self._settings.port)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("%s lost the broker (%s); reconnecting", self.device_id, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self._commands_topic:
            # amqtt sometimes replays other topics into a persistent session; not ours to read.
            log.debug("ignoring message on %s", message.topic)
            return
        try:
            command = decode_command(bytes(message.payload))
        except InvalidMessage as exc:
            log.warning("ignoring invalid command on %s: %s", message.topic, exc.reason)
            return
        if isinstance(command, EventsAcknowledged):
            self._acks.put(command.ranges)
            self._wake.set()
        elif self._on_command is not None:
            self._on_command(command)
        else:
            log.info("%s received %s; this agent does not act on it yet", self.device_id, command.type)

    # the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        conn = open_database(self._db_path)
        try:
            self._drain_loop(Outbox(conn))
        finally:
            conn.close()

    def _drain_loop(self, outbox: Outbox) -> None:
        inflight: dict[int, float] = {}  # seq -> monotonic time it was published
        cursor = 0  # highest seq published since the last reset
        resend_after = self._resend_after_s
        next_telemetry = time.monotonic()
        topic = topics.events(self.device_id)
        while not self._stopping.is_set():
            self._wake.wait(IDLE_WAKE_S)
            self._wake.clear()
            if self._apply_acks(outbox, inflight):
                resend_after = self._resend_after_s
            if not self._connected.is_set():
                continue
            now = time.monotonic()
            if self._reconnected:
                self._reconnected = False
                inflight.clear()
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
                for seq, payload in outbox.pending(after=cursor, limit=room):
                    self._client.publish(topic, payload, qos=1)
                    inflight[seq] = now
                    cursor = seq
                    self.published += 1
            if now >= next_telemetry:
                next_telemetry = now + self._telemetry_interval_s
                self._publish_telemetry(outbox.depth())

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

    def _publish_telemetry(self, depth: int) -> None:
        report = TelemetryReported(
            device_id=self.device_id,
            occurred_at=self._clock.now(),
            outbox_depth=depth,
            uptime_s=time.monotonic() - self._started_at,
        )
        self._client.publish(topics.telemetry(self.device_id), encode(report), qos=0)
