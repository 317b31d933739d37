"""Two cloud workers share the fleet's stream (MQTT shared subscription) and one PostgreSQL.

One worker is killed with SIGKILL mid-stream: the devices' outboxes resend what it never
acknowledged, the other worker stores it, and nothing is lost or stored twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import func, select

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import EVENTS
from edge.agent import Agent
from edge.settings import EdgeSettings
from simulator.household import VirtualHousehold
from tests.support.services import Mosquitto, free_port, postgres_database

AGENTS = 3
EVENTS_PER_AGENT = 2000


def start_worker(
    name: str, database_url: str, mqtt_port: int, log: IO[str]
) -> tuple[subprocess.Popen[str], int]:
    http_port = free_port()
    env = {
        **os.environ,
        "FRIGO_CLOUD_DATABASE_URL": database_url,
        "FRIGO_CLOUD_MQTT__PORT": str(mqtt_port),
        "FRIGO_CLOUD_SHARED_GROUP": "ingest",
        "FRIGO_CLOUD_CLIENT_ID": name,
        "FRIGO_CLOUD_HTTP_PORT": str(http_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "frigo", "cloud"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=1).json()["broker_connected"]:
                return process, http_port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"worker {name} did not start")


def stored(http_port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=5).json()["stored"])


@pytest.mark.mosquitto
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_two_workers_one_killed_mid_stream_lose_and_double_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with postgres_database() as url, (tmp_path / "workers.log").open("w") as log:
        engine = create_db_engine(url)
        create_schema(engine)  # as `frigo cloud migrate` would, before the workers start
        workers = [start_worker(f"worker-{n}", url, mosquitto.port, log) for n in (1, 2)]
        agents = [
            Agent(
                EdgeSettings(
                    device_id=f"fleet-{n}",
                    data_dir=tmp_path / f"fleet-{n}",
                    mqtt=mosquitto.mqtt(),
                    resend_after_s=2,
                )
            )
            for n in range(AGENTS)
        ]
        try:
            for agent in agents:
                agent.start(poll=False)

            def stream(agent: Agent, seed: int) -> None:
                household = VirtualHousehold(seed)
                for _ in range(EVENTS_PER_AGENT):
                    agent.scan(household.next_line(agent.quantity))

            streams = [threading.Thread(target=stream, args=(a, n)) for n, a in enumerate(agents)]
            for thread in streams:
                thread.start()
            # Kill the first worker once both have stored a share of the stream.
            deadline = time.monotonic() + 60
            while stored(workers[0][1]) < 500 or stored(workers[1][1]) < 500:
                assert time.monotonic() < deadline, "the workers did not share the stream"
                time.sleep(0.05)
            workers[0][0].send_signal(signal.SIGKILL)
            workers[0][0].wait(10)
            for thread in streams:
                thread.join(120)
            for agent in agents:
                assert agent.wait_drained(timeout=120), (
                    f"{agent.device_id}: {agent.outbox_depth()} never acknowledged"
                )
            last_seqs = {agent.device_id: agent.recorder.outbox.last_seq() for agent in agents}
        finally:
            for agent in agents:
                agent.stop()
            for process, _ in workers:
                if process.poll() is None:
                    process.terminate()
                    process.wait(15)
        with engine.connect() as conn:
            rows = conn.execute(select(EVENTS.c.device_id, EVENTS.c.seq)).all()
            assert conn.execute(select(func.count()).select_from(EVENTS)).scalar_one() == len(rows)
        engine.dispose()
    assert sum(last_seqs.values()) == AGENTS * EVENTS_PER_AGENT
    by_device: dict[str, list[int]] = {}
    for device_id, seq in rows:
        by_device.setdefault(device_id, []).append(seq)
    assert {d: sorted(s) for d, s in by_device.items()} == {
        d: list(range(1, last + 1)) for d, last in last_seqs.items()
    }, "events lost or stored twice"
