"""A ``frigo cloud`` worker in a process of its own, for the load runs and benchmarks to measure."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from simulator.mosquitto import free_port

# A `frigo cloud` worker starts, migrates its database and connects in a few seconds.
CLOUD_START_TIMEOUT_S = 30.0


def start_cloud(
    database_url: str, port: int, client_id: str = "bench-cloud", env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``frigo cloud`` in a process of its own; return it and its HTTP port once connected."""
    import httpx

    http_port = free_port()
    environment = {
        **os.environ,
        **(env or {}),
        "FRIGO_CLOUD_DATABASE_URL": database_url,
        "FRIGO_CLOUD_MQTT__PORT": str(port),
        "FRIGO_CLOUD_HTTP_PORT": str(http_port),
        "FRIGO_CLOUD_CLIENT_ID": client_id,
        # The swarm's devices are in the broker's password file, not in the cloud's database.
        "FRIGO_CLOUD_AUTO_ENROLL": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "frigo", "cloud"], env=environment, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + CLOUD_START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=1).json()["broker_connected"]:
                return process, http_port
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
        time.sleep(0.1)


def stop_cloud(process: subprocess.Popen[bytes]) -> None:
    """Stop a cloud started by :func:`start_cloud`."""
    process.terminate()
    process.wait(30)
