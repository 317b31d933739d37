"""`frigo demo` as a person runs it: events from 3 fridges reach the cloud and its API while it runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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
