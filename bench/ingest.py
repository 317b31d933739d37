"""Cloud ingestion against a bare paho subscriber, through the same Mosquitto, same payloads, QoS 1.

(a) a bare paho-mqtt subscriber's receive rate; (b) the cloud worker's end-to-end rate: validated,
committed and acknowledged (the devices' first to last ack); the ratio b/a. Both consumers are
measured the same way, free of the load generator's own speed: the events are queued in the
broker for the consumer's offline persistent session, then the consumer starts and drains them.
Last, the
publish → ack latency (an upper bound of publish → commit: the ack leaves after the commit) at a
fixed offered load. The cloud and the bare subscriber each run in a process of their own; the
device connections run in this one. Prints one JSON object.

    .venv/bin/python -m bench.ingest [--database sqlite|postgres] [--devices 20] [--events 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared import topics
from simulator.load.blast import Devices, blast, payloads
from simulator.load.cloudworker import operator_headers, start_cloud, stop_cloud
from tests.support.services import Mosquitto, mosquitto_binary, postgres_database

BARE_SUBSCRIBER = """
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, expected = int(sys.argv[1]), int(sys.argv[2])
pattern, mode, client_id = sys.argv[3:6]
state = {"count": 0, "first": None, "last": None}
def on_message(client, userdata, message):
    now = time.time()
    state["first"] = state["first"] or now
    state["count"] += 1
    state["last"] = now
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
props = Properties(PacketTypes.CONNECT)
props.SessionExpiryInterval = 3600
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
client.on_message = on_message
client.on_connect = lambda c, u, f, r, p: c.subscribe(pattern, qos=1)
client.connect("127.0.0.1", port, clean_start=False, properties=props)
client.loop_start()
if mode == "prime":
    time.sleep(1)
    client.disconnect()
    client.loop_stop()
    print("primed", flush=True)
    sys.exit(0)
deadline = time.time() + 600
while state["count"] < expected and time.time() < deadline:
    time.sleep(0.01)
client.disconnect()
client.loop_stop()
print(json.dumps(state), flush=True)
"""


def bare_rate(port: int, devices: int, per_device: int, client_id: str = "bare-subscriber") -> float:
    """Queue the events for an offline persistent subscriber, then time how fast it takes them."""
    total = devices * per_device
    command = [
        sys.executable,
        "-c",
        BARE_SUBSCRIBER,
        str(port),
        str(total),
        topics.all_devices(topics.Channel.EVENTS),
    ]
    subprocess.run([*command, "prime", client_id], check=True, capture_output=True, timeout=60)
    generator = Devices(port, "bare", devices)
    blast(generator, per_device)
    generator.wait_published(120)
    generator.close()
    process = subprocess.run(
        [*command, "drain", client_id], check=True, capture_output=True, text=True, timeout=600
    )
    result = json.loads(process.stdout.strip().splitlines()[-1])
    if result["count"] < total:
        raise RuntimeError(f"the bare subscriber got {result['count']} of {total}")
    return float((total - 1) / (result["last"] - result["first"]))


def cloud_rate(
    database_url: str, port: int, devices: int, per_device: int, prefix: str = "load"
) -> tuple[float, int]:
    """Queue the events for the offline cloud's persistent session, start it, time first to last ack."""
    total = devices * per_device
    # A session of its own: earlier phases queued their events for the older ones.
    client_id = f"bench-cloud-{prefix}"
    process, _ = start_cloud(database_url, port, client_id)  # creates the persistent session
    stop_cloud(process)
    generator = Devices(port, prefix, devices)
    blast(generator, per_device)
    generator.wait_published(120)
    process, http_port = start_cloud(database_url, port, client_id)
    try:
        deadline = time.time() + 600
        while generator.acked_count() < total and time.time() < deadline:
            time.sleep(0.01)
        operator = operator_headers(database_url)
        stats = httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=5, headers=operator)
        stored = int(stats.json()["stored"])
    finally:
        stop_cloud(process)
        generator.close()
    if generator.acked_count() < total:
        raise RuntimeError(f"only {generator.acked_count()} of {total} events acknowledged")
    first_ack = min(generator.ack_times.values())
    return (total - 1) / (generator.last_ack - first_ack), stored


def latency(port: int, devices: int, rate: float, seconds: float) -> dict[str, float]:
    generator = Devices(port, "paced", devices)
    per_device = int(rate * seconds / devices)
    batches = {d: payloads(d, per_device) for d in generator.ids}
    sent: dict[tuple[str, int], float] = {}
    time.sleep(0.5)
    interval = 1.0 / rate
    next_at = time.time()
    for seq in range(per_device):
        for device_id in generator.ids:
            now = time.time()
            if now < next_at:
                time.sleep(next_at - now)
            sent[(device_id, seq + 1)] = time.time()
            generator.clients[device_id].publish(topics.events(device_id), batches[device_id][seq], qos=1)
            next_at += interval
    deadline = time.time() + 60
    while generator.acked_count() < len(sent) and time.time() < deadline:
        time.sleep(0.01)
    generator.close()
    offered = len(sent) / (max(sent.values()) - min(sent.values()))
    samples = sorted((generator.ack_times[k] - t) * 1000 for k, t in sent.items() if k in generator.ack_times)
    return {
        "offered_events_per_s": round(offered),
        "acknowledged": len(samples),
        "sent": len(sent),
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 1),
        "max_ms": round(samples[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--events", type=int, default=20_000, help="events per rate measurement")
    parser.add_argument("--latency-rate", type=float, default=2000, help="offered events/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rate measurements (bare, then cloud) to take the median of"
    )
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    per_device = args.events // args.devices
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "database": args.database,
        "devices": args.devices,
        "events": per_device * args.devices,
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frigo-bench-")))
        (tmp / "mosquitto").mkdir()
        broker = Mosquitto(binary, tmp / "mosquitto")
        broker.start()
        stack.callback(broker.stop)
        database_url = (
            f"sqlite:///{tmp / 'cloud.db'}"
            if args.database == "sqlite"
            else stack.enter_context(postgres_database())
        )
        runs = []
        stored = 0
        for run in range(1, args.repeat + 1):
            print(f"run {run}/{args.repeat}: the bare subscriber...", file=sys.stderr)
            bare = bare_rate(broker.port, args.devices, per_device, f"bare-subscriber-{run}")
            print(f"run {run}/{args.repeat}: the cloud worker...", file=sys.stderr)
            cloud, stored_now = cloud_rate(
                database_url, broker.port, args.devices, per_device, prefix=f"load{run}"
            )
            stored += stored_now
            runs.append({"bare": round(bare), "cloud": round(cloud), "ratio": round(cloud / bare, 3)})
        print("measuring latency at a fixed load...", file=sys.stderr)
        process, _ = start_cloud(database_url, broker.port, "bench-cloud-latency")
        try:
            results["latency"] = latency(broker.port, args.devices, args.latency_rate, args.latency_seconds)
        finally:
            stop_cloud(process)
        # The machine's noise moves both rates run to run: the median of the paired ratios is the figure.
        results["runs"] = runs
        results["bare_subscriber_events_per_s"] = statistics.median(r["bare"] for r in runs)
        results["cloud_events_per_s"] = statistics.median(r["cloud"] for r in runs)
        results["ratio_cloud_to_bare"] = statistics.median(r["ratio"] for r in runs)
        results["cloud_stored"] = stored
        results["cloud_stored_expected"] = args.repeat * per_device * args.devices
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
