"""Two cloud workers share the fleet's stream (MQTT shared subscription) and one PostgreSQL.

One worker is killed with SIGKILL mid-stream: the devices' outboxes resend what it never
acknowledged, the other worker stores it, and nothing is lost or stored twice. The broker is
configured as in production: provisioned fridges, one MQTT user per worker (the username is the
client id), so the workers do not knock each other off.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import EVENTS
from cloud.identity import devices
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.mqtt import MqttSettings
from simulator.household import VirtualHousehold
from tests.support.auth import bearer
from tests.support.services import Mosquitto, free_port, postgres_database, require_mosquitto

AGENTS = 3
EVENTS_PER_AGENT = 2000
WORKERS = ("worker-1", "worker-2")
# Not 0 (no limit): Mosquitto 2.0.11 with 0 disconnects a client after a QoS 1 publish the ACL denies.
MAX_QUEUED = 1_000_000


def start_worker(
    name: str, password: str, database_url: str, mqtt_port: int, log: IO[str]
) -> tuple[subprocess.Popen[str], int]:
    """Start `frigo cloud` logged in as its own MQTT user ``name``, which is also its client id."""
    http_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")},
        "FRIGO_CLOUD_DATABASE_URL": database_url,
        "FRIGO_CLOUD_MQTT__PORT": str(mqtt_port),
        "FRIGO_CLOUD_MQTT__USERNAME": name,
        "FRIGO_CLOUD_MQTT__PASSWORD": password,
        "FRIGO_CLOUD_SHARED_GROUP": "ingest",
        "FRIGO_CLOUD_HTTP_PORT": str(http_port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "frigo", "cloud"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # Ready: the database and the broker answer (/stats takes an operator's token).
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                return process, http_port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"worker {name} did not start")


def stored(http_port: int, operator: dict[str, str]) -> int:
    stats = httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=5, headers=operator)
    return int(stats.json()["stored"])


def start_mosquitto(directory: Path, engine: Engine, passwords: dict[str, str]) -> Mosquitto:
    """Start a Mosquitto that knows the provisioned fridges and one user per worker."""
    directory.mkdir()
    passwd, acl = directory / "passwd", directory / "acl"
    with Session(engine) as session:
        devices.write_mosquitto_files(session, passwd, acl, passwords)
    broker = Mosquitto(
        require_mosquitto(),
        directory,
        anonymous=False,
        password_file=passwd,
        acl_file=acl,
        max_queued_messages=MAX_QUEUED,
    )
    broker.start()
    return broker


@pytest.mark.mosquitto
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_two_workers_one_killed_mid_stream_lose_and_double_nothing(tmp_path: Path) -> None:
    with postgres_database() as url:
        engine = create_db_engine(url)
        create_schema(engine)  # as `frigo cloud migrate` would, before the workers start
        with Session(engine) as session:
            issued = {f"fleet-{n}": devices.provision(session, f"fleet-{n}") for n in range(AGENTS)}
        passwords = {name: secrets.token_urlsafe(24) for name in WORKERS}
        mosquitto = start_mosquitto(tmp_path / "mosquitto", engine, passwords)
        try:
            operator = bearer(engine)
            last_seqs = stream_and_kill_a_worker(tmp_path, url, mosquitto, issued, passwords, operator)
        finally:
            mosquitto.stop()  # also when a check fails: a broker left running fails later tests
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


def stream_and_kill_a_worker(
    tmp_path: Path,
    url: str,
    mosquitto: Mosquitto,
    issued: dict[str, str],
    passwords: dict[str, str],
    operator: dict[str, str],
) -> dict[str, int]:
    """Stream from every fridge to two workers, kill one mid-stream; return each fridge's last seq."""
    workers: list[tuple[subprocess.Popen[str], int]] = []
    agents = [
        Agent(
            EdgeSettings(
                device_id=device_id,
                data_dir=tmp_path / device_id,
                mqtt=MqttSettings.model_validate(
                    {"port": mosquitto.port, "username": device_id, "password": secret}
                ),
                resend_after_s=2,
            )
        )
        for device_id, secret in issued.items()
    ]
    with (tmp_path / "workers.log").open("w") as log:
        try:
            for name in WORKERS:
                workers.append(start_worker(name, passwords[name], url, mosquitto.port, log))
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
            while stored(workers[0][1], operator) < 500 or stored(workers[1][1], operator) < 500:
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
            return {agent.device_id: agent.recorder.outbox.last_seq() for agent in agents}
        finally:
            for agent in agents:
                agent.stop()
            for process, _ in workers:
                if process.poll() is None:
                    process.terminate()
                    process.wait(15)
