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
            # Ready: the database and the broker answer (/stats takes an operator's token).
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                return process, http_port
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
        time.sleep(0.1)


def operator_headers(database_url: str) -> dict[str, str]:
    """Return the Authorization header of a new operator's token in the worker's database, for
    ``/stats`` and ``/metrics`` (after :func:`start_cloud`: the worker made the schema)."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from cloud.db.engine import create_db_engine
    from cloud.identity.tokens import issue_token

    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            token = issue_token(session, "admin", None, datetime.now(UTC))
            session.commit()
    finally:
        engine.dispose()
    return {"Authorization": f"Bearer {token}"}


def stop_cloud(process: subprocess.Popen[bytes]) -> None:
    """Stop a cloud started by :func:`start_cloud`."""
    process.terminate()
    process.wait(30)
