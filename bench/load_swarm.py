"""Load mode at scale: N fridge connections from one process against Mosquitto (issue 5, item 7).

The swarm (``simulator/swarm.py``) opens every device's connection on one asyncio event loop,
each logged in as its own device with its own secret, ramping up at ``--connect-rate`` per second,
and publishes ``item_added`` events at ``--rate`` per second for the whole swarm for
``--duration`` seconds (the ramp included). The bench starts its own Mosquitto with a password
file of every device (Mosquitto's ``$7$`` hash from ``cloud.devices``, written here directly: the
argon2 hash that provisioning also computes would take minutes for 10,000 devices) and the ACL
file of ``cloud.devices``. With ``--cloud``, a ``frigo cloud`` worker (SQLite) ingests the events
and acknowledges them. Prints one JSON object.

    .venv/bin/python -m bench.load_swarm [--devices 10000] [--rate 2000] [--duration 60]
        [--connect-rate 1000] [--cloud] [--progress]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from bench.ingest import start_cloud, stop_cloud
from simulator.swarm import (
    CLOUD_USER,
    MAX_QUEUED,
    FdLimitError,
    Swarm,
    SwarmStats,
    make_credentials,
    raise_fd_limit,
    write_broker_files,
)
from simulator.swarm import show_progress as show_swarm_progress
from tests.support.services import Mosquitto, mosquitto_binary

# How often memory and the cloud's backlog are sampled.
SAMPLE_S = 1.0


def rss_mb(pid: int | str = "self") -> float:
    """Return a process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int | str = "self") -> float:
    """Return the CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """Return the CPU time of a process and of its live children (the cloud's writer process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children)


@dataclass
class Sampler:
    """Memory and the cloud's lag while the swarm runs.

    The resident memory of this process and of the broker (the largest, and at the ramp's end),
    and the largest backlog of events published but not yet acknowledged by the cloud.
    """

    broker_pid: int
    peak_mb: float = 0.0
    broker_peak_mb: float = 0.0
    ramped_mb: float | None = None
    broker_ramped_mb: float | None = None
    ack_backlog_max: int = 0

    async def sample(self, swarm: Swarm) -> None:
        """Sample every SAMPLE_S until the swarm is done."""
        while not swarm.done:
            own, broker = rss_mb(), rss_mb(self.broker_pid)
            self.peak_mb, self.broker_peak_mb = max(self.peak_mb, own), max(self.broker_peak_mb, broker)
            stats = swarm.snapshot()
            if self.ramped_mb is None and stats.ramp_s is not None:
                self.ramped_mb, self.broker_ramped_mb = own, broker
            if swarm.await_acks:
                self.ack_backlog_max = max(self.ack_backlog_max, stats.published - stats.acked)
            await asyncio.sleep(SAMPLE_S)


async def run_swarm(swarm: Swarm, sampler: Sampler, progress: bool) -> SwarmStats:
    """Run the swarm beside the sampler (and the live display)."""
    helpers = [asyncio.create_task(sampler.sample(swarm))]
    if progress:
        helpers.append(asyncio.create_task(show_swarm_progress(swarm, Console(stderr=True))))
    try:
        return await swarm.run()
    finally:
        await asyncio.gather(*helpers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000, help="events/s for the whole swarm")
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending, ramp included")
    parser.add_argument("--connect-rate", type=float, default=1000, help="new connections per second")
    parser.add_argument("--cloud", action="store_true", help="run a cloud worker that stores and acks")
    parser.add_argument("--progress", action="store_true", help="live display on stderr")
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    try:
        # Before the broker starts: it inherits the limit and needs a descriptor per device too.
        fd_limit = raise_fd_limit(args.devices)
    except FdLimitError as exc:
        sys.exit(str(exc))
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "devices": args.devices,
        "rate": args.rate,
        "connect_rate": args.connect_rate,
        "duration_s": args.duration,
        "cloud": args.cloud,
        "fd_limit": fd_limit,
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frigo-swarm-")))
        credentials = make_credentials("swarm", args.devices)
        cloud_password = secrets.token_urlsafe(24)
        password_file, acl_file = write_broker_files(tmp, credentials, {CLOUD_USER: cloud_password})
        broker = Mosquitto(
            binary,
            tmp,
            anonymous=False,
            password_file=password_file,
            acl_file=acl_file,
            max_queued_messages=MAX_QUEUED,
        )
        broker.start()
        stack.callback(broker.stop)
        assert broker.process is not None
        http_port = cloud_pid = None
        if args.cloud:
            # bench.ingest.start_cloud passes this process's environment on to `frigo cloud`.
            os.environ["FRIGO_CLOUD_MQTT__USERNAME"] = CLOUD_USER
            os.environ["FRIGO_CLOUD_MQTT__PASSWORD"] = cloud_password
            process, http_port = start_cloud(f"sqlite:///{tmp / 'cloud.db'}", broker.port, "bench-swarm")
            stack.callback(stop_cloud, process)
            cloud_pid = process.pid
        swarm = Swarm(
            credentials,
            port=broker.port,
            rate=args.rate,
            connect_rate=args.connect_rate,
            duration_s=args.duration,
            await_acks=args.cloud,
        )
        sampler = Sampler(broker.process.pid)
        started = time.monotonic()
        cpu_before, broker_cpu_before = cpu_seconds(), cpu_seconds(broker.process.pid)
        cloud_cpu_before = tree_cpu_seconds(cloud_pid) if cloud_pid is not None else 0.0
        stats = asyncio.run(run_swarm(swarm, sampler, args.progress))
        wall = time.monotonic() - started
        cpu = cpu_seconds() - cpu_before
        broker_cpu = cpu_seconds(broker.process.pid) - broker_cpu_before
        steady = stats.steady_events_per_s
        results |= {
            "connected_max": stats.connected_max,
            "connected_when_sending_stopped": stats.connected_at_end,
            "ramp_s": _round(stats.ramp_s),
            "published": stats.published,
            "events_per_s_sent_after_ramp": None if steady is None else round(steady),
            "events_per_s_sent_overall": round(stats.published / (stats.sending_s or wall)),
            "pubacked": stats.pubacked,
            "drain_s": _round(stats.drain_s),
            "cloud_acked": stats.acked,
            "cloud_ack_backlog_max": sampler.ack_backlog_max if args.cloud else None,
            "skipped_slots": stats.skipped,
            "errors": stats.errors,
            "rss_mb_after_ramp": _round(sampler.ramped_mb),
            "rss_mb_peak": _round(sampler.peak_mb),
            "mosquitto_rss_mb_after_ramp": _round(sampler.broker_ramped_mb),
            "mosquitto_rss_mb_peak": _round(sampler.broker_peak_mb),
            "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
            "mosquitto_cpu_percent_of_one_core": round(100 * broker_cpu / wall, 1),
            "wall_s": round(wall, 1),
        }
        if http_port is not None and cloud_pid is not None:
            cloud = httpx.get(f"http://127.0.0.1:{http_port}/stats", timeout=10).json()
            results |= {
                "cloud_stored": cloud["stored"],
                "cloud_duplicates": cloud["duplicates"],
                "cloud_cpu_percent_of_one_core": round(
                    100 * (tree_cpu_seconds(cloud_pid) - cloud_cpu_before) / wall, 1
                ),
            }
    print(json.dumps(results, indent=2))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
