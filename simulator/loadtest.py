"""Load mode: thousands of fridge connections against a Mosquitto of the run's own, measured.

A scenario with a ``[load]`` table (``load-10k``) runs here instead of households: the swarm
(:mod:`simulator.swarm`) opens every device's connection on one asyncio loop, each logged in as its
own device with its own secret, ramps up at ``connect_rate`` a second and publishes ``item_added``
events at ``rate`` a second for the whole swarm for ``duration_s`` (the ramp included). The run
starts its own Mosquitto with a password file of every device (Mosquitto's ``$7$`` hash, written
directly: the argon2 hash that provisioning computes would take minutes for 10,000 devices) and the
ACL file of :mod:`cloud.identity.devices`; with ``cloud = true`` a ``frigo cloud`` worker in a process of
its own (SQLite) stores and acknowledges the events. The result says how many devices were
connected at once, the events a second, the errors, and the memory and CPU of each process.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ScenarioError
from simulator.mosquitto import Mosquitto, free_port, mosquitto_binary
from simulator.swarm import (
    CLOUD_USER,
    MAX_QUEUED,
    FdLimitError,
    Swarm,
    SwarmStats,
    make_credentials,
    raise_fd_limit,
    show_progress,
    write_broker_files,
)

# How often memory and the cloud's backlog are sampled.
SAMPLE_S = 1.0
# A `frigo cloud` worker starts, migrates its database and connects in a few seconds.
CLOUD_START_TIMEOUT_S = 30.0


class LoadSettings(BaseModel):
    """The swarm of a load scenario; a scenario's ``[load]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: int = Field(default=10_000, ge=1, le=50_000, description="Connections, each its own user.")
    rate: float = Field(default=2000, gt=0, le=100_000, description="Events a second for the whole swarm.")
    duration_s: float = Field(default=60, gt=0, le=3600, description="Seconds of sending, the ramp included.")
    connect_rate: float = Field(default=1000, gt=0, description="New connections a second while ramping up.")
    cloud: bool = Field(default=False, description="Run a cloud worker that stores and acknowledges events.")


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


async def _run_swarm(swarm: Swarm, sampler: Sampler, progress: bool) -> SwarmStats:
    from rich.console import Console

    helpers = [asyncio.create_task(sampler.sample(swarm))]
    if progress:
        helpers.append(asyncio.create_task(show_progress(swarm, Console(stderr=True))))
    try:
        return await swarm.run()
    finally:
        await asyncio.gather(*helpers)


def run_load(settings: LoadSettings, *, progress: bool = False, seed: int = 1) -> dict[str, Any]:
    """Run the swarm of ``settings`` against a Mosquitto of its own; return the figures.

    With ``progress``, a live table on stderr shows connected devices, events/s and errors.
    """
    import httpx

    binary = mosquitto_binary()
    if binary is None:
        raise ScenarioError("load mode needs Mosquitto: install it (apt-get install mosquitto)")
    try:
        # Before the broker starts: it inherits the limit and needs a descriptor per device too.
        fd_limit = raise_fd_limit(settings.devices)
    except FdLimitError as exc:
        raise ScenarioError(str(exc)) from None
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **settings.model_dump(),
        "fd_limit": fd_limit,
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frigo-swarm-")))
        credentials = make_credentials(f"swarm{seed}", settings.devices)
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
        if settings.cloud:
            env = {"FRIGO_CLOUD_MQTT__USERNAME": CLOUD_USER, "FRIGO_CLOUD_MQTT__PASSWORD": cloud_password}
            process, http_port = start_cloud(f"sqlite:///{tmp / 'cloud.db'}", broker.port, "sim-swarm", env)
            stack.callback(stop_cloud, process)
            cloud_pid = process.pid
        swarm = Swarm(
            credentials,
            port=broker.port,
            rate=settings.rate,
            connect_rate=settings.connect_rate,
            duration_s=settings.duration_s,
            await_acks=settings.cloud,
        )
        sampler = Sampler(broker.process.pid)
        started = time.monotonic()
        cpu_before, broker_cpu_before = cpu_seconds(), cpu_seconds(broker.process.pid)
        cloud_cpu_before = tree_cpu_seconds(cloud_pid) if cloud_pid is not None else 0.0
        stats = asyncio.run(_run_swarm(swarm, sampler, progress))
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
            "cloud_ack_backlog_max": sampler.ack_backlog_max if settings.cloud else None,
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
    return results


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
