"""Ask a broker whether it takes a login: the CONNACK reason code of one connection attempt."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shared.mqtt import release


def connack(
    port: int, username: str, password: str, *, client_id: str | None = None, protocol: int = mqtt.MQTTv5
) -> int:
    """Return the broker's CONNACK reason code (0: accepted) for a login on 127.0.0.1:``port``."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"probe-{uuid.uuid4().hex[:6]}",
        protocol=protocol,  # type: ignore[arg-type]
    )
    client.username_pw_set(username, password)
    answers: list[int] = []
    answered = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        answers.append(reason.value)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        answered.wait(15)
    finally:
        client.disconnect()
        client.loop_stop()
        # paho closes its sockets only when the client is collected, perhaps in a later test whose
        # warnings check then fails: close them here (shared.mqtt.release says why).
        release(client)
    assert answers, "the broker never answered CONNECT"
    return answers[0]
