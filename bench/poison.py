"""How long another device waits for its acknowledgement after a poison message (issue 16: ≤ 1 s).

For each broker (Mosquitto on MQTT 5, the embedded broker on 3.1.1), each poison (nesting 100,000
deep, invalid UTF-8, a 5,000-digit number, a batch of 101 events) and each way of sending it (live,
or retained), a fresh cloud worker (SQLite, with its writer process) runs; a poisoning device
publishes the poison on its own events topic and, right after, a neighbour publishes one valid event.
The figure is the time from the neighbour's publish to its ``events_acknowledged``. Prints one
JSON object: per case the median and the worst of ``--repeat`` rounds, and the worst overall.

    .venv/bin/python -m bench.poison [--repeat 5] [--broker mosquitto|embedded|both]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.messages import EventsAcknowledged, ItemAdded, decode_command, encode
from shared.mqtt import MqttSettings, release
from simulator.mosquitto import Mosquitto, free_port, mosquitto_binary

POISONER, NEIGHBOUR = "bench-poisoner", "bench-neighbour"


def event(device: str, seq: int) -> bytes:
    return encode(
        ItemAdded(
            event_id=uuid.uuid4(),
            device_id=device,
            seq=seq,
            lot_id=seq,
            occurred_at=datetime.now(UTC),
            code="4006381333931",
        )
    )


def poisons() -> dict[str, bytes]:
    batch = b",".join(event(POISONER, seq) for seq in range(1, 102))
    return {
        "nested-100000": b"[" * 100_000 + b"]" * 100_000,
        "invalid-utf8": b'{"schema_version":1,"type":"item_added","code":"\xff\xfe\xfd"}',
        "number-5000-digits": b'{"schema_version":1,"type":"item_added","seq":' + b"9" * 5000 + b"}",
        "batch-of-101": b'{"schema_version":1,"type":"event_batch","device_id":"'
        + POISONER.encode()
        + b'","events":['
        + batch
        + b"]}",
    }


@contextmanager
def broker(kind: str, folder: Path) -> Iterator[MqttSettings]:
    if kind == "mosquitto":
        binary = mosquitto_binary()
        if binary is None:
            raise SystemExit("mosquitto is not installed: apt-get install mosquitto, or --broker embedded")
        mosquitto = Mosquitto(binary, folder)
        mosquitto.start()
        try:
            yield mosquitto.mqtt()
        finally:
            mosquitto.stop()
        return
    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port)
    embedded.start()
    try:
        yield MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1")
    finally:
        embedded.stop()


def client(settings: MqttSettings, name: str) -> mqtt.Client:
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    made = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol)
    made.connect(settings.host, settings.port)
    made.loop_start()
    return made


def one_round(settings: MqttSettings, folder: Path, poison: bytes, retain: bool) -> float:
    """Return the seconds from the neighbour's publish to its acknowledgement."""
    cloud = CloudService(
        CloudSettings(
            database_url=f"sqlite:///{folder / f'cloud-{uuid.uuid4().hex[:6]}.db'}",
            mqtt=settings,
            http_port=0,
            client_id=f"bench-cloud-{uuid.uuid4().hex[:6]}",
            auto_enroll=True,
            planning=False,
        )
    )
    cloud.start()
    acks: queue.Queue[tuple[float, EventsAcknowledged]] = queue.Queue()
    poisoner, neighbour = client(settings, POISONER), client(settings, NEIGHBOUR)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        command = decode_command(bytes(message.payload))
        if isinstance(command, EventsAcknowledged):
            acks.put((time.perf_counter(), command))

    subscribed = threading.Event()
    neighbour.on_message = on_message
    neighbour.on_subscribe = lambda *_: subscribed.set()
    try:
        if not cloud.subscriber.wait_connected(10):
            raise TimeoutError("the cloud did not connect")
        neighbour.subscribe(topics.commands(NEIGHBOUR), qos=1)
        if not subscribed.wait(10):  # the acknowledgement must find the subscription
            raise TimeoutError("no SUBACK")
        poisoner.publish(topics.events(POISONER), poison, qos=1, retain=retain).wait_for_publish(10)
        started = time.perf_counter()
        neighbour.publish(topics.events(NEIGHBOUR), event(NEIGHBOUR, 1), qos=1)
        acked_at, ack = acks.get(timeout=30)
        assert ack.device_id == NEIGHBOUR
        return acked_at - started
    finally:
        for each in (poisoner, neighbour):
            each.disconnect()
            each.loop_stop()
            release(each)
        cloud.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--broker", choices=["mosquitto", "embedded", "both"], default="both")
    args = parser.parse_args()
    kinds = ["mosquitto", "embedded"] if args.broker == "both" else [args.broker]
    cases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for kind in kinds:
            for name, poison in poisons().items():
                for retain in (False, True):
                    where = folder / f"{kind}-{name}-{retain}"
                    where.mkdir()
                    with broker(kind, where) as settings:
                        seconds = [one_round(settings, folder, poison, retain) for _ in range(args.repeat)]
                    key = f"{kind}/{name}/{'retained' if retain else 'live'}"
                    cases[key] = {"median_s": statistics.median(seconds), "max_s": max(seconds)}
                    median_ms, worst_ms = cases[key]["median_s"] * 1000, max(seconds) * 1000
                    print(f"{key}: median {median_ms:.0f} ms, worst {worst_ms:.0f} ms", flush=True)
    worst = max(case["max_s"] for case in cases.values())
    print(
        json.dumps(
            {
                "cases": cases,
                "worst_s": worst,
                "target_s": 1.0,
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
