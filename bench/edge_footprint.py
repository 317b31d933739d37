"""Measure the edge agent's footprint: start → connected, steady RSS, idle CPU, backlog drain rate.

Runs a Mosquitto of its own on a free loopback port and the cloud worker in this process; the
agent runs as `frigo edge` in a subprocess, as on the Pi. Prints one JSON object.

    .venv/bin/python -m bench.edge_footprint [--backlog 20000] [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.service import CloudService
from cloud.settings import CloudSettings
from edge.database import open_database
from edge.recorder import Recorder
from shared import topics
from shared.clock import SystemClock
from shared.messages import decode_availability
from shared.mqtt import release
from simulator.load.procfs import cpu_seconds, rss_mb
from tests.support.services import Mosquitto, free_port, mosquitto_binary

CODES = ["4006381333931", "96385074", "036000291452", "2000000000015"]


def agent(device_id: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    # stdin stays open and empty: a scanner that nobody uses, as in a fridge at night.
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge",
            "--device-id",
            device_id,
            "--data-dir",
            str(data_dir),
            "--mqtt-port",
            str(port),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_online(port: int, device_id: str, timeout: float) -> float:
    """Return the monotonic time the device's retained availability says online."""
    states: queue.Queue[str] = queue.Queue()
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spy-{device_id}", protocol=mqtt.MQTTv5)
    spy.on_message = lambda _c, _u, m: states.put(decode_availability(bytes(m.payload)).state)
    spy.connect("127.0.0.1", port)
    spy.subscribe(topics.availability(device_id), qos=1)
    spy.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if states.get(timeout=0.05) == "online":
                    return time.monotonic()
            except queue.Empty:
                continue
        raise TimeoutError(f"{device_id} did not come online in {timeout} s")
    finally:
        spy.disconnect()
        spy.loop_stop()
        release(spy)


def prefill(data_dir: Path, device_id: str, count: int) -> None:
    """Record ``count`` scans offline, as a fridge does during an outage."""
    conn = open_database(data_dir / "edge.db")
    recorder = Recorder(conn, device_id, SystemClock())
    for n in range(count):
        recorder.add(CODES[n % len(CODES)])
    conn.close()


def outbox_depth(data_dir: Path) -> int:
    conn = open_database(data_dir / "edge.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=20_000, help="events recorded offline before draining")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="how long to measure idle CPU")
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="frigo-bench-") as tmp:
        root = Path(tmp)
        (root / "mosquitto").mkdir()
        broker = Mosquitto(binary, root / "mosquitto")
        broker.start()
        cloud = CloudService(
            CloudSettings(
                database_url=f"sqlite:///{root / 'cloud.db'}",
                mqtt=broker.mqtt(),
                http_port=free_port(),
                auto_enroll=True,  # the bench's agents are not provisioned
            )
        )
        cloud.start()
        try:
            # 1. Start to connected, steady RSS and idle CPU of an idle agent.
            started = time.monotonic()
            process = agent("bench-idle", root / "idle", broker.port)
            online = wait_online(broker.port, "bench-idle", 30)
            results["start_to_connected_s"] = round(online - started, 3)
            time.sleep(5)  # settle: first telemetry, imports done
            cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            cpu = cpu_seconds(process.pid) - cpu_before
            results["idle_cpu_percent_of_one_core"] = round(100 * cpu / (time.monotonic() - wall_before), 2)
            results["steady_rss_mb"] = round(rss_mb(process.pid), 1)
            process.terminate()
            process.wait(15)

            # 2. Backlog drain: events recorded offline, then the agent starts and sends them all.
            print(f"recording a backlog of {args.backlog} events...", file=sys.stderr)
            prefill(root / "drain", "bench-drain", args.backlog)
            process = agent("bench-drain", root / "drain", broker.port)
            online = wait_online(broker.port, "bench-drain", 30)
            while outbox_depth(root / "drain") > 0:
                time.sleep(0.05)
            drained = time.monotonic() - online
            results["backlog_events"] = args.backlog
            results["backlog_drain_s"] = round(drained, 2)
            results["backlog_drain_events_per_s"] = round(args.backlog / drained)
            results["drain_rss_mb"] = round(rss_mb(process.pid), 1)
            process.terminate()
            process.wait(15)
            results["cloud_stored"] = cloud.ingestor.stats.stored
        finally:
            cloud.stop()
            broker.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
