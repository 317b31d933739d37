"""`frigo edge` as a real process: how it stops on a signal, and how it ends when a broker refuses it.

SIGINT and SIGTERM must stop it the same way: no new input, what is in flight recorded, a bounded
wait for the cloud's acknowledgements, one line, exit code 0. A broker that will never take the
agent (a protocol it does not speak, a wrong password) must end it within 5 s with one line saying
what to change, while a broker that is down is only waited for.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import IO

import httpx
import pytest

from cloud.identity.devices import household_id_for
from cloud.service import CloudService
from edge.service import STOP_FLUSH_S
from shared.mqtt import MqttSettings
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.hangup import hanging_up_server
from tests.support.services import Mosquitto, free_port, require_mosquitto, require_tool

DEVICE = "kitchen"
CODES = ["4006381333931", "96385074", "036000291452"]
CONFIRMATION = re.compile(r"^ok seq=(\d+) ")
STOPPED = re.compile(
    r"^stopped on (SIGINT|SIGTERM); "
    r"(nothing waits to be sent|(\d+) events wait in the outbox for the next start)$"
)
# The acceptance bound for a refusal, from the start of the process (Python's start-up included).
REFUSAL_LIMIT_S = 5.0


@contextmanager
def agent_process(
    tmp_path: Path, port: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Start `frigo edge` on ``port`` with stdin, stdout and stderr as pipes; kill it if still running."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")} | (env or {})
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "frigo", "edge", "--device-id", DEVICE),
            *("--data-dir", str(tmp_path / "data"), "--mqtt-port", str(port), *args),
        ],
        env=environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with suppress(BrokenPipeError):
                    stream.close()


def pipes(process: subprocess.Popen[str]) -> tuple[IO[str], IO[str], IO[str]]:
    """Return the process's stdin, stdout and stderr."""
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    return process.stdin, process.stdout, process.stderr


def outbox_seqs(data: Path) -> list[int]:
    with closing(sqlite3.connect(data / "edge.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [int(seq) for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]


def last_seq(data: Path) -> int:
    with closing(sqlite3.connect(data / "edge.db")) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0


# refusals -------------------------------------------------------------------------------------


def wait_refused(process: subprocess.Popen[str], started: float) -> tuple[float, str, str]:
    """Wait for the agent to end on its own; return how long it ran, its stdout and its stderr."""
    try:
        process.wait(REFUSAL_LIMIT_S + 10)
    except subprocess.TimeoutExpired:
        pytest.fail("the agent never gave up on a broker that refuses it")
    elapsed = time.monotonic() - started
    _, stdout, stderr = pipes(process)
    return elapsed, stdout.read(), stderr.read()


def test_mqtt_5_against_the_embedded_broker_ends_in_5_s_naming_the_protocol(
    amqtt_broker: MqttSettings, tmp_path: Path
) -> None:
    started = time.monotonic()
    with agent_process(tmp_path, amqtt_broker.port) as process:
        stdin = pipes(process)[0]
        stdin.write(f"+{CODES[0]}\n")  # and the input stays open: only the refusal ends it
        stdin.flush()
        elapsed, out, err = wait_refused(process, started)

    assert process.returncode == 1
    assert elapsed < REFUSAL_LIMIT_S
    # The refusal may come before the scan is read, which is then not taken: either way, a scan
    # confirmed is kept for a start with the right protocol, and only a scan confirmed.
    assert out in ("", f"ok seq=1 +1 {CODES[0]} (now 1)\n")
    [line] = err.splitlines()
    assert line.startswith(f"error: the broker at 127.0.0.1:{amqtt_broker.port} does not speak MQTT 5 (")
    assert line.endswith(
        '; use --mqtt-protocol 3.1.1 (setting mqtt.protocol = "3.1.1"; the embedded broker speaks only 3.1.1)'
    )
    assert outbox_seqs(tmp_path / "data") == ([1] if out else [])


def test_mqtt_5_against_a_broker_that_hangs_up_ends_in_5_s_naming_the_protocol(tmp_path: Path) -> None:
    # What the embedded broker did before it learnt to refuse MQTT 5 with a CONNACK.
    with hanging_up_server() as (port, _received):
        started = time.monotonic()
        with agent_process(tmp_path, port) as process:
            elapsed, out, err = wait_refused(process, started)

    assert process.returncode == 1
    assert elapsed < REFUSAL_LIMIT_S
    assert out == ""
    assert err.splitlines() == [
        f"error: the broker at 127.0.0.1:{port} does not speak MQTT 5 (it closed the connection 2 times "
        "right after CONNECT, without an answer); use --mqtt-protocol 3.1.1 (setting mqtt.protocol = "
        '"3.1.1"; the embedded broker speaks only 3.1.1)'
    ]


@pytest.mark.mosquitto
def test_a_wrong_password_ends_the_agent_with_one_line(tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        [require_tool("mosquitto_passwd"), "-b", "-c", str(passwords), DEVICE, "right"],
        check=True,
        timeout=30,
    )
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(require_mosquitto(), tmp_path / "mosquitto", anonymous=False, password_file=passwords)
    broker.start()
    try:
        started = time.monotonic()
        with agent_process(tmp_path, broker.port, env={"FRIGO_EDGE_MQTT__PASSWORD": "wrong"}) as process:
            elapsed, _, err = wait_refused(process, started)
    finally:
        broker.stop()

    assert process.returncode == 1
    assert elapsed < REFUSAL_LIMIT_S
    [line] = err.splitlines()
    assert line.startswith(
        f"error: the broker at 127.0.0.1:{broker.port} refused the login of '{DEVICE}': "
        "it refused the CONNECT: "
    )
    assert line.endswith(
        "check mqtt.username and mqtt.password (a fridge's are its device id and the secret `frigo devices "
        "provision` printed for it)"
    )


# stopping -------------------------------------------------------------------------------------


def feed(stdin: IO[str]) -> None:
    """Write scans until the agent stops reading."""
    n = 0
    try:
        while True:
            stdin.write("".join(f"+{CODES[(n + i) % len(CODES)]}\n" for i in range(10)))
            stdin.flush()
            n += 10
            time.sleep(0.005)
    except (BrokenPipeError, ValueError, OSError):
        return


def collect(stdout: IO[str], lines: list[str]) -> None:
    for line in stdout:
        lines.append(line)


def stored_seqs(cloud: CloudService) -> list[int]:
    """Return the seqs of the device's events the cloud has stored."""
    household = household_id_for(DEVICE)
    seqs: list[int] = []
    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
        after = 0
        while page := client.get(
            f"/households/{household}/events", params={"after": after, "limit": 1000}
        ).json():
            seqs += [int(e["seq"]) for e in page]
            after = page[-1]["id"]
    return sorted(seqs)


@pytest.mark.mosquitto
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_stream_stops_the_agent_cleanly(
    sig: signal.Signals, mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    data = tmp_path / "data"
    lines: list[str] = []
    with agent_process(tmp_path, mosquitto.port) as process:
        stdin, stdout, stderr = pipes(process)
        feeder = threading.Thread(target=feed, args=(stdin,), daemon=True)
        reader = threading.Thread(target=collect, args=(stdout, lines), daemon=True)
        feeder.start()
        reader.start()
        deadline = time.monotonic() + 30
        while len(lines) < 200:  # scans going in, and going out to the cloud
            assert time.monotonic() < deadline, "the agent did not take the scans"
            time.sleep(0.01)
        process.send_signal(sig)
        signalled = time.monotonic()
        process.wait(STOP_FLUSH_S + 10)
        stopping = time.monotonic() - signalled
        reader.join(10)
        err = stderr.read()

    assert process.returncode == 0, err
    assert "Traceback" not in err
    [line] = err.splitlines()
    stopped = STOPPED.match(line)
    assert stopped is not None, line
    assert stopped[1] == sig.name
    assert stopping < STOP_FLUSH_S + 5
    # Every scan recorded was confirmed, and each confirmation is a recorded event: nothing was
    # half-done when the signal came.
    confirmed = [int(m[1]) for m in map(CONFIRMATION.match, lines) if m is not None]
    assert len(confirmed) == len(lines)
    assert confirmed == list(range(1, len(confirmed) + 1))
    assert last_seq(data) == len(confirmed)
    # Whatever the cloud did not store waits, intact, in the outbox, as the stop line says.
    waiting = outbox_seqs(data)
    assert len(waiting) == int(stopped[3] or 0)
    assert set(waiting) | set(stored_seqs(cloud)) == set(confirmed)


@pytest.mark.mosquitto
def test_a_signal_while_waiting_for_acks_stops_without_waiting_longer(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # A broker and no cloud: nothing is ever acknowledged, and the agent would wait for ever.
    with agent_process(tmp_path, mosquitto.port) as process:
        stdin, _, stderr = pipes(process)
        stdin.write(f"+{CODES[0]}\n+{CODES[1]}\n")
        stdin.close()  # end of input: the agent now waits for the acknowledgements
        assert stderr.readline() == "input ended; waiting for the cloud to acknowledge 2 events\n"
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        process.wait(STOP_FLUSH_S + 10)
        stopping = time.monotonic() - signalled
        err = stderr.read()

    assert process.returncode == 0
    assert err == "stopped on SIGTERM; 2 events wait in the outbox for the next start\n"
    assert stopping < STOP_FLUSH_S + 5
    assert outbox_seqs(tmp_path / "data") == [1, 2]


@pytest.mark.mosquitto
def test_an_agent_without_a_stdin_scanner_stops_on_a_signal(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with agent_process(tmp_path, mosquitto.port, env={"FRIGO_EDGE_SENSORS__SCANNER": "none"}) as process:
        time.sleep(1)  # running, connected, nothing to do
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        process.wait(STOP_FLUSH_S + 10)
        err = pipes(process)[2].read()

    assert process.returncode == 0
    assert err == "stopped on SIGINT; nothing waits to be sent\n"


def test_an_agent_whose_broker_is_down_keeps_running_until_stopped(tmp_path: Path) -> None:
    with agent_process(tmp_path, free_port()) as process:
        stdin, _, stderr = pipes(process)
        stdin.write(f"+{CODES[0]}\n")
        stdin.flush()
        time.sleep(3)  # a few reconnection attempts
        assert process.poll() is None, stderr.read()
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_FLUSH_S + 10)
        err = stderr.read()

    assert process.returncode == 0
    assert err == "stopped on SIGTERM; 1 events wait in the outbox for the next start\n"
    assert outbox_seqs(tmp_path / "data") == [1]


def test_a_second_agent_on_a_running_agents_folder_is_refused(tmp_path: Path) -> None:
    port = free_port()
    with agent_process(tmp_path, port) as first:
        time.sleep(1.5)  # started, holding the folder
        assert first.poll() is None
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "frigo",
                "edge",
                "--device-id",
                DEVICE,
                "--data-dir",
                str(tmp_path / "data"),
            ],
            input="",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        first.send_signal(signal.SIGTERM)
        first.wait(10)

    assert second.returncode == 1
    assert second.stderr == (
        f"error: cannot start the agent: an agent is running on data folder {tmp_path / 'data'} (or a "
        "hand-over is under way); stop it first (`sudo systemctl stop frigo-edge` on a Pi), or give this one "
        "a data folder of its own (--data-dir)\n"
    )
    assert first.returncode == 0
