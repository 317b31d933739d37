"""The embedded broker (amqtt, MQTT 3.1.1 only) refuses other protocol versions plainly.

A real paho client of MQTT 5 or 3.1 against a real :class:`EmbeddedBroker`, anonymous and with
authentication: it gets a CONNACK refusing its protocol version at once, the broker logs one
warning and no traceback, and 3.1.1 clients go on as before.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud.db.engine import create_db_engine, create_schema
from cloud.mqtt.auth import BrokerAuth
from cloud.mqtt.broker import EmbeddedBroker
from shared.mqtt import release
from tests.support.connack import connack
from tests.support.services import free_port

CLOUD, CLOUD_PASSWORD = "cloud-1", "cloud-password-for-this-test"
# The bar: the refusal arrives within 5 s (amqtt used to leave the client waiting forever).
ANSWER_WITHIN_S = 5.0


@pytest.fixture(params=["anonymous", "authenticated"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A running embedded broker, without and then with authentication; yields its port."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    create_schema(engine)
    auth = BrokerAuth(engine, {CLOUD: CLOUD_PASSWORD}) if request.param == "authenticated" else None
    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port, auth=auth)
    embedded.start()
    try:
        yield port
    finally:
        embedded.stop()
        engine.dispose()


def first_answer(port: int, protocol: int) -> tuple[ReasonCode | None, float]:
    """Connect with paho on ``protocol``; return the CONNACK's reason (None: none came) and how
    long it took."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="newer-client", protocol=protocol)  # type: ignore[arg-type]
    client.username_pw_set(CLOUD, CLOUD_PASSWORD)
    client.reconnect_delay_set(60, 60)  # one attempt is what the test looks at
    answers: list[ReasonCode] = []
    answered = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        answers.append(reason)
        answered.set()

    client.on_connect = on_connect
    started = time.monotonic()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        answered.wait(ANSWER_WITHIN_S * 2)
        took = time.monotonic() - started
    finally:
        client.disconnect()
        client.loop_stop()
        release(client)
        sock = client.socket()
        if isinstance(sock, socket.socket):  # paho may keep the socket the broker hung up on
            sock.close()
    return (answers[0] if answers else None), took


@pytest.mark.parametrize(("protocol", "named"), [(mqtt.MQTTv5, "MQTT 5"), (mqtt.MQTTv31, "MQTT 3.1")])
def test_a_client_of_another_mqtt_version_is_refused_at_once_with_one_warning(
    broker: int, caplog: pytest.LogCaptureFixture, protocol: int, named: str
) -> None:
    caplog.set_level(logging.INFO)

    reason, took = first_answer(broker, protocol)

    assert reason is not None, "the broker answers the CONNECT"
    assert reason.is_failure
    assert took < ANSWER_WITHIN_S
    time.sleep(0.2)  # anything the broker would log after hanging up
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.name) for r in warnings] == [("WARNING", "cloud.mqtt.broker")]
    message = warnings[0].getMessage()
    assert named in message
    assert "3.1.1" in message
    assert warnings[0].exc_info is None, "no traceback"
    # A 3.1.1 client is served as before.
    assert connack(broker, CLOUD, CLOUD_PASSWORD, protocol=mqtt.MQTTv311) == 0
