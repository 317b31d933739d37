"""Connection settings and the MQTT client setup that the edge, the cloud and the simulator share.

Needs paho-mqtt, which the ``edge`` and ``cloud`` extras install; the rest of ``shared`` needs only
pydantic.
"""

from __future__ import annotations

import ssl
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
# Paho's default of 20 unacknowledged QoS 1 publishes caps throughput on links with latency.
MAX_INFLIGHT = 100


class MqttSettings(BaseModel):
    """Where and how to reach the MQTT broker."""

    model_config = ConfigDict(frozen=True)

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
