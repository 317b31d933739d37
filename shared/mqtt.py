"""Connection settings and the MQTT client setup that the edge, the cloud and the simulator share.

Needs paho-mqtt, which the ``edge`` and ``cloud`` extras install; the rest of ``shared`` needs only
pydantic.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, SecretStr

# A week: long enough for a fridge to come back from a holiday-length outage with its session
# intact; the outbox still covers anything longer.
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
log = logging.getLogger(__name__)

# One network-loop iteration waits at most this long for socket activity: how quickly a stop
# request is noticed by the network thread.
LOOP_TIMEOUT_S = 0.2
# Longest a stopping client waits for its DISCONNECT to leave.
DISCONNECT_WAIT_S = 1.0
# Paho's default of 20 unacknowledged QoS 1 publishes caps throughput on links with latency.
MAX_INFLIGHT = 100


class MqttSettings(BaseModel):
    """Where and how to reach the MQTT broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version; the embedded broker (amqtt) speaks only 3.1.1."
    )
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: Path | None = Field(default=None, description="CA file; setting it turns TLS on.")
    keepalive_s: int = Field(default=30, ge=5)
    session_expiry_s: int = Field(default=DEFAULT_SESSION_EXPIRY_S, ge=0)


def create_client(
    settings: MqttSettings, client_id: str, *, persistent: bool
) -> tuple[mqtt.Client, Properties | None]:
    """Return a configured, not yet connected client and the CONNECT properties to use.

    ``persistent`` keeps the broker-side session (subscriptions, queued QoS 1 messages) across
    disconnects: clean session off on MQTT 3.1.1, clean start off plus a session expiry on MQTT 5.
    """
    if settings.protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        properties: Properties | None = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        assert properties is not None
        properties.SessionExpiryInterval = settings.session_expiry_s if persistent else 0
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        properties = None
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file is not None:
        client.tls_set(ca_certs=str(settings.tls_ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    return client, properties


def connect_in_background(
    client: mqtt.Client, settings: MqttSettings, properties: Properties | None, *, persistent: bool
) -> None:
    """Start the client's network thread, which connects and keeps reconnecting on its own."""
    if settings.protocol == "5":
        client.connect_async(
            settings.host,
            settings.port,
            keepalive=settings.keepalive_s,
            clean_start=not persistent,
            properties=properties,
        )
    else:
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    client.loop_start()


class Backoff:
    """Exponential back-off with jitter between reconnection attempts: 1 s doubling to 60 s.

    Each wait is drawn between half and all of the current step, so a fleet that lost its broker
    at the same moment does not come back in lockstep.
    """

    def __init__(self, first_s: float = 1.0, max_s: float = 60.0, rng: random.Random | None = None) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._step = first_s
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Return how long to wait before the next attempt, and grow the step."""
        delay = self._rng.uniform(self._step / 2, self._step)
        self._step = min(self._step * 2, self._max_s)
        return delay

    def reset(self) -> None:
        """Start again from the first step, after a successful connection."""
        self._step = self._first_s


def run_network_loop(
    client: mqtt.Client,
    settings: MqttSettings,
    properties: Properties | None,
    *,
    persistent: bool,
    stop: threading.Event,
    backoff: Backoff | None = None,
) -> None:
    """Connect, serve and reconnect with jittered back-off until ``stop`` is set (own thread)."""
    backoff = backoff or Backoff()
    connected_once = False
    while not stop.is_set():
        try:
            if connected_once:
                client.reconnect()
            elif settings.protocol == "5":
                client.connect(
                    settings.host,
                    settings.port,
                    keepalive=settings.keepalive_s,
                    clean_start=not persistent,
                    properties=properties,
                )
            else:
                client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
            connected_once = True
        except (OSError, ValueError, mqtt.WebsocketConnectionError) as exc:
            log.debug("cannot reach %s:%s: %s", settings.host, settings.port, exc)
            stop.wait(backoff.next_delay())
            continue
        backoff_was_reset = False
        while not stop.is_set():
            rc = client.loop(timeout=LOOP_TIMEOUT_S)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
            if not backoff_was_reset and client.is_connected():
                backoff.reset()
                backoff_was_reset = True
        if stop.is_set():
            break
        stop.wait(backoff.next_delay())
    if client.is_connected():
        client.disconnect()
        # Serve the socket until paho has written the DISCONNECT and closed it (about one loop).
        deadline = time.monotonic() + DISCONNECT_WAIT_S
        while client.socket() is not None and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
