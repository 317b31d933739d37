"""SIGINT and SIGTERM stop `frigo demo`, `frigo cloud` and `frigo broker` as their own end would.

Each command runs as a real process in a session of its own, and the signal goes to its whole
process group, as a terminal's Ctrl-C (or systemd's stop) does: the cloud's writer child gets it
too. A clean stop exits 0, prints its final count, logs no traceback and no ERROR, and leaves no
temporary folder behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from cloud.db.engine import create_db_engine
from cloud.db.tables import EVENTS
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.mqtt import release
from simulator.household import VirtualHousehold
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto, free_port, wait_for_port

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
# Bounds on each wait, never a fixed sleep: the demo's first summary comes after 5 s.
STARTED_WITHIN_S = 60.0
STOPPED_WITHIN_S = 60.0
POLL_S = 0.1


@dataclass
class Command:
    """A `frigo` command running in a process group of its own, its output in files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = STARTED_WITHIN_S) -> None:
        """Poll ``condition`` until true; fail (with the output) if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{what}: not seen\n--- stdout\n{self.output()}\n--- stderr\n{self.errors()}")
            time.sleep(POLL_S)

    def stop(self, signum: signal.Signals) -> int:
        """Send ``signum`` to the whole process group, as a terminal does; return the exit code."""
        os.killpg(self.process.pid, signum)
        return self.process.wait(STOPPED_WITHIN_S)

    def assert_quiet(self) -> None:
        """Assert that stderr holds no traceback and no ERROR line."""
        errors = self.errors()
        assert "Traceback" not in errors, errors
        assert "ERROR" not in errors, errors


@contextmanager
def frigo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Command]:
    """Run `python -m frigo ARGS` without the caller's FRIGO_* variables; kill it if left running."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")}
    environment.update(PYTHONIOENCODING="utf-8", NO_COLOR="1", COLUMNS="200", **(env or {}))
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "frigo", *args],
            cwd=tmp_path,
            env=environment,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a process group of its own, as a terminal's job has
        )
    try:
        yield Command(process, stdout, stderr)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("signum", SIGNALS)
def test_demo_drains_counts_and_removes_its_folder(tmp_path: Path, signum: signal.Signals) -> None:
    temp = tmp_path / "temp"  # the demo's temporary folder goes under it, through TMPDIR
    temp.mkdir()
    with frigo(
        tmp_path,
        *("demo", "--mqtt-port", str(free_port()), "--http-port", str(free_port())),
        env={"TMPDIR": str(temp)},
    ) as demo:
        demo.wait_for(lambda: re.search(r"stored [1-9]", demo.output()) is not None, "events stored")
        folder = re.search(r"data in (\S+)", demo.output())
        assert folder is not None, demo.output()
        data = Path(folder[1])
        assert data.parent == temp
        assert (data / "admin-token").exists()

        code = demo.stop(signum)

    output = demo.output()
    assert code == 0, output + demo.errors()
    done = re.search(r"Done: (\d+) scans, (\d+) events stored, .*every event acknowledged", output)
    assert done is not None, output
    assert done[1] == done[2]  # one event per scan, each stored once
    demo.assert_quiet()
    assert not data.exists()
    assert list(temp.iterdir()) == []


@pytest.mark.mosquitto
@pytest.mark.timeout(150)
@pytest.mark.parametrize("signum", SIGNALS)
def test_cloud_commits_and_acknowledges_what_it_holds(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path, signum: signal.Signals
) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = create_db_engine(url)

    def stored() -> int:
        with engine.connect() as connection:
            try:
                return int(connection.execute(select(func.count()).select_from(EVENTS)).scalar_one())
            except Exception:  # no schema yet: the worker creates it as it starts
                return 0

    agent = Agent(
        EdgeSettings(
            device_id="fridge-1", data_dir=tmp_path / "fridge", mqtt=mosquitto.mqtt(), resend_after_s=1
        )
    )
    household = VirtualHousehold(seed=2)
    recorded = 0
    scanning = threading.Event()
    scanning.set()

    def scan() -> None:
        # Scans go on while the worker stops: some events are in flight when the signal comes.
        nonlocal recorded
        while scanning.is_set():
            recorded += len(agent.scan(household.next_line(agent.quantity)))
            time.sleep(0.005)

    scanner = threading.Thread(target=scan, name="scanner")
    agent.start()
    try:
        with frigo(
            tmp_path,
            *("cloud", "--database-url", url, "--mqtt-port", str(mosquitto.port), "--http-port", "0"),
            # The fridge is not provisioned; batches wait a second to fill, so that a stop always
            # finds one in flight.
            env={"FRIGO_CLOUD_AUTO_ENROLL": "true", "FRIGO_CLOUD_BATCH_INTERVAL_S": "1"},
        ) as cloud:
            cloud.wait_for(lambda: "cloud worker running" in cloud.output(), "the worker started")
            scanner.start()
            cloud.wait_for(lambda: stored() >= 50, "events stored")

            code = cloud.stop(signum)

        assert code == 0, cloud.output() + cloud.errors()
        cloud.assert_quiet()
        count = re.search(r"cloud worker stopped: (\d+) events stored", cloud.output())
        assert count is not None, cloud.output()
        assert int(count[1]) == stored() > 0  # what it counted is committed
        scanning.clear()
        scanner.join(10)
        # Every event it stored was acknowledged to the fridge before it disconnected, and none
        # it did not store was: the fridge holds exactly the others (the acks may be on their way).
        deadline = time.monotonic() + 10
        while stored() != recorded - agent.outbox_depth() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert stored() == recorded - agent.outbox_depth()

        # A new worker gets the rest: nothing was lost in the stop.
        start_cloud(mosquitto.mqtt(), url, auto_enroll=True)
        assert agent.wait_drained(timeout=60), f"{agent.outbox_depth()} events never acknowledged"
        assert stored() == recorded
    finally:
        scanning.clear()
        agent.stop()
        engine.dispose()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNALS)
def test_broker_disconnects_its_clients_and_exits(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    with frigo(tmp_path, "broker", "--port", str(port)) as broker:
        broker.wait_for(lambda: "listening" in broker.output(), "the broker started")
        wait_for_port(port)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv311)
        disconnected = threading.Event()
        client.on_disconnect = lambda *_: disconnected.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            client.subscribe("frigo/#", qos=1)
            client.publish(
                "frigo/v1/devices/fridge-1/availability", b"{}", qos=1, retain=True
            ).wait_for_publish(5)

            code = broker.stop(signum)

            assert disconnected.wait(10), "the client is still connected"
        finally:
            client.loop_stop()
            release(client)
    assert code == 0, broker.output() + broker.errors()
    assert "embedded MQTT broker stopped" in broker.output()
    broker.assert_quiet()
