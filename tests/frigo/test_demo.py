"""`frigo demo` as a person runs it: events from 3 fridges reach the cloud and its API while it runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from paho.mqtt import publish
from paho.mqtt.client import MQTTv311

from tests.support.factories import added, msg
from tests.support.services import free_port

# The bar: events from 3 simulated fridges reach the cloud within 30 s.
FIRST_EVENTS_WITHIN_S = 30


@pytest.mark.timeout(90)
def test_demo_shows_three_fridges_and_serves_their_inventory(tmp_path: Path) -> None:
    mqtt_port, http_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "frigo",
            "demo",
            "--duration",
            "12",
            "--mqtt-port",
            str(mqtt_port),
            "--http-port",
            str(http_port),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = time.monotonic()
        inventories: dict[str, dict[str, Any]] = {}
        token_file = tmp_path / "admin-token"
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
            while time.monotonic() - started < FIRST_EVENTS_WITHIN_S:
                time.sleep(0.5)
                if not token_file.exists():
                    continue  # not started yet
                client.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
                try:
                    households = client.get("/households").json()
                except httpx.TransportError:
                    continue  # not listening yet
                inventories = {
                    h["id"]: client.get(f"/households/{h['id']}/inventory").json() for h in households
                }
                # A fridge's first scans may take out what it put in: wait until each holds something.
                if len(inventories) == 3 and all(
                    i["event_count"] > 0 and i["items"] for i in inventories.values()
                ):
                    break
            assert len(inventories) == 3, f"households seen: {list(inventories)}"
            assert all(i["event_count"] > 0 for i in inventories.values()), inventories
            assert all(i["items"] for i in inventories.values()), inventories
            assert client.get("/docs").status_code == 200
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{http_port}/docs" in output
    assert "every event acknowledged" in output
    assert token_file.stat().st_mode & 0o077 == 0  # the operator's token: its owner's eyes only


@pytest.mark.timeout(120)
def test_demo_counts_a_made_up_device_apart_and_never_calls_it_online(tmp_path: Path) -> None:
    mqtt_port, http_port = free_port(), free_port()
    output = tmp_path / "stdout.txt"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "frigo", "demo", "--mqtt-port", str(mqtt_port)),
                *("--http-port", str(http_port), "--data-dir", str(tmp_path / "data")),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches its process group, as in a terminal
        )
    token_file = tmp_path / "data" / "admin-token"

    def shown() -> str:
        return output.read_text(encoding="utf-8", errors="replace")

    def until(condition: Callable[[], object], what: str) -> Any:
        deadline = time.monotonic() + FIRST_EVENTS_WITHIN_S
        while not (value := condition()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{what}: not seen\n{shown()}")
            time.sleep(0.2)
        return value

    try:
        until(lambda: "Press Ctrl-C" in shown(), "the demo started")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}",
            timeout=5,
            headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
        ) as client:
            # Anyone who reaches the anonymous broker can publish as a device the demo never had.
            publish.single(
                *msg(added("made-up-1", 1)), qos=1, hostname="127.0.0.1", port=mqtt_port, protocol=MQTTv311
            )

            def devices() -> dict[str, list[dict[str, Any]]]:
                return {h["id"]: h["devices"] for h in client.get("/households").json()}

            def enrolled() -> bool:
                # The fridges are online once their retained availability reached the cloud.
                found = devices()
                fridges = [d for k, d in found.items() if k != "hh-made-up-1"]
                return "hh-made-up-1" in found and len(fridges) == 3 and all(d[0]["online"] for d in fridges)

            until(enrolled, "the made-up device enrolled and the fridges online")
            # It sent an event, but the broker never said it is online: it is not.
            assert devices()["hh-made-up-1"] == [
                {"id": "made-up-1", "online": False, "last_seen_at": None, "outbox_depth": None}
            ]
        until(lambda: "other devices: 1 event from 1 device" in shown(), "the line of other devices")
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    text = shown()
    assert process.returncode == 0, text
    assert "made-up-1" not in text  # not a row of the table: the demo's fridges only
    assert text.count("hh-fridge-001") >= 1
    assert re.search(r"Done: .*\nother devices: 1 event from 1 device", text), text
