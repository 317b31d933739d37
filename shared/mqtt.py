"""Connection settings and the MQTT client setup that the edge, the cloud and the simulator share.

Needs paho-mqtt, which the ``edge`` and ``cloud`` extras install; the rest of ``shared`` needs only
pydantic.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.errors import BrokerRefused, InsecureTransport, RefusalKind

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
# CONNACK refusals that no retry changes (MQTT 5 reason codes; paho maps MQTT 3.1.1 return codes onto
# them). Anything else (server unavailable, busy, quota) may pass: the client keeps trying.
FINAL_REFUSALS: dict[int, RefusalKind] = {
    0x84: "protocol",  # unsupported protocol version
    0x85: "refused",  # client identifier not valid
    0x86: "login",  # bad user name or password
    0x87: "login",  # not authorized
    0x8A: "refused",  # banned
    0x8C: "login",  # bad authentication method
}
# A broker that does not know MQTT 5 may drop the connection without any CONNACK (amqtt did), and so
# does a TLS port to plain MQTT: this many connections in a row closed within UNANSWERED_CLOSE_S of
# the CONNECT mean one of the two, which a TLS handshake then tells apart. Two, not one, so that a
# single hiccup is not mistaken for it; with the first back-off (0.5-1 s) the agent knows in ~2 s.
UNANSWERED_LIMIT = 2
UNANSWERED_CLOSE_S = 2.0
# How long that TLS handshake may take: a broker answers one in milliseconds.
TLS_PROBE_S = 2.0


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
    insecure: bool = Field(
        default=False,
        description="Allow a password over plaintext MQTT to a broker on another host (no TLS).",
    )
    keepalive_s: int = Field(default=30, ge=5)
    session_expiry_s: int = Field(default=DEFAULT_SESSION_EXPIRY_S, ge=0)


def is_loopback(host: str) -> bool:
    """Say whether ``host`` names this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # any other name may resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_transport(settings: MqttSettings) -> None:
    """Refuse settings that would send a password in clear text to a broker on another host.

    Raise :class:`InsecureTransport` when a password is set, TLS is off (no ``tls_ca_file``) and the
    host is not loopback, unless ``settings.insecure`` says the network is trusted.
    """
    if settings.password is None or not settings.password.get_secret_value():
        return
    if settings.tls_ca_file is not None or settings.insecure:
        return
    if not is_loopback(settings.host):
        raise InsecureTransport(settings.host, settings.port, settings.username)


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


def release(client: mqtt.Client) -> None:
    """Close every socket of a client whose network loop has ended (loop_stop(), or loop() no more).

    Besides its connection, paho keeps a pair of loopback TCP sockets to wake its loop, and closes
    them only when the client is garbage-collected. A client in a reference cycle (its callbacks
    bound to an object that holds it) can then have its sockets finalised first, each raising a
    ResourceWarning far from where the client was used (seen as a rare test failure). reinitialise()
    is paho's public way to close them all; the client is not used after this.
    """
    client.reinitialise()


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
    on_refused: Callable[[BrokerRefused], None] | None = None,
) -> None:
    """Connect, serve and reconnect with jittered back-off until ``stop`` is set (own thread).

    Network errors (no route, broker down) are retried for ever: a fridge works offline. A refusal
    no retry changes (:data:`FINAL_REFUSALS`, or an MQTT 5 CONNECT the broker keeps hanging up on)
    is handed to ``on_refused`` and ends the loop; without ``on_refused`` it is logged at every
    attempt and retried. The client's ``on_connect`` must be set before this starts: the loop
    watches each CONNACK through it.
    """
    backoff = backoff or Backoff()
    answers = _watch_connacks(client)
    connected_once = False
    unanswered = 0  # connections in a row closed right after CONNECT, without a CONNACK
    while not stop.is_set():
        answers.clear()
        attempted = time.monotonic()
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
        if answers:
            unanswered = 0
        elif time.monotonic() - attempted < UNANSWERED_CLOSE_S:
            unanswered += 1
        else:
            unanswered = 0
        refused = _final_refusal(settings, answers[-1] if answers else None, unanswered)
        if refused is not None:
            if on_refused is not None:
                release(client)
                on_refused(refused)
                return
            log.warning("%s", refused)
        stop.wait(backoff.next_delay())
    if client.is_connected():
        client.disconnect()
        # Serve the socket until paho has written the DISCONNECT and closed it (about one loop).
        deadline = time.monotonic() + DISCONNECT_WAIT_S
        while client.socket() is not None and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
    release(client)


def _watch_connacks(client: mqtt.Client) -> list[ReasonCode]:
    """Return a list that gets the reason code of every CONNACK; the client's own callback still runs."""
    answers: list[ReasonCode] = []
    inner: Any = client.on_connect

    def on_connect(
        c: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        answers.append(reason)
        if inner is not None:
            inner(c, userdata, flags, reason, props)

    client.on_connect = on_connect
    return answers


def _final_refusal(
    settings: MqttSettings, answer: ReasonCode | None, unanswered: int
) -> BrokerRefused | None:
    """Return the refusal that ends the connection attempts, if the last attempt was one."""
    username = settings.username
    if answer is not None:
        kind = FINAL_REFUSALS.get(answer.value) if answer.is_failure else None
        if kind is None:
            return None
        reason = f"it refused the CONNECT: {answer.getName()}"
        return BrokerRefused(settings.host, settings.port, settings.protocol, kind, reason, username)
    if unanswered != UNANSWERED_LIMIT:
        return None  # tried and told once per run of hang-ups (MQTT 3.1.1 goes on trying)
    closed = f"it closed the connection {unanswered} times right after CONNECT, without an answer"
    if settings.tls_ca_file is None and _speaks_tls(settings.host, settings.port):
        reason = f"{closed}, and answers a TLS handshake"
        return BrokerRefused(settings.host, settings.port, settings.protocol, "tls", reason, username)
    if settings.protocol == "5":
        return BrokerRefused(settings.host, settings.port, "5", "protocol", closed, username)
    return None


def _speaks_tls(host: str, port: int) -> bool:
    """Say whether ``host:port`` answers a TLS handshake (only asked: no certificate is checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=TLS_PROBE_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        # An alert (a client certificate required, say) is TLS speaking; a hang-up is not.
        return "ALERT" in (exc.reason or "")
    except OSError:
        return False
