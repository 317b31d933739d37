"""Load mode: thousands of fridge connections against a Mosquitto of the run's own, measured.

A scenario with a ``[load]`` table (``load-10k``) runs here instead of households: the swarm
(:mod:`simulator.load.swarm`) opens every device's connection on one asyncio loop, each logged in
as its own device with its own secret, ramps up at ``connect_rate`` a second and publishes
``item_added`` events at ``rate`` a second for the whole swarm for ``duration_s`` (the ramp
included). The run starts its own Mosquitto with a password file of every device (Mosquitto's
``$7$`` hash, written directly: the argon2 hash that provisioning computes would take minutes for
10,000 devices) and the ACL file of :mod:`cloud.identity.devices` (:mod:`simulator.load.broker`);
with ``cloud = true`` a ``frigo cloud`` worker in a process of its own (SQLite) stores and
acknowledges the events. The result says how many devices were connected at once, the events a
second, the errors, and the memory and CPU of each process.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulator.errors import ScenarioError
from simulator.load.broker import CLOUD_USER, MAX_QUEUED, Credential, make_credentials, write_broker_files
from simulator.load.cloudworker import operator_headers, start_cloud, stop_cloud
from simulator.load.procfs import cpu_seconds, rss_mb, tree_cpu_seconds
from simulator.load.progress import show_progress
from simulator.load.settings import LoadSettings
from simulator.load.swarm import FdLimitError, Swarm, SwarmStats, raise_fd_limit
from simulator.mosquitto import Mosquitto, mosquitto_binary

# How often memory and the cloud's backlog are sampled.
SAMPLE_S = 1.0


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


@dataclass(frozen=True, slots=True)
class CloudProcess:
    """The ``frigo cloud`` worker of a run: its process id, HTTP port and an operator's header."""

    pid: int
    http_port: int
    operator: dict[str, str]


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
        broker = _start_broker(stack, binary, tmp, credentials, cloud_password)
        assert broker.process is not None
        cloud = _start_cloud(stack, tmp, broker.port, cloud_password) if settings.cloud else None
        swarm = Swarm(
            credentials,
            port=broker.port,
            rate=settings.rate,
            connect_rate=settings.connect_rate,
            duration_s=settings.duration_s,
            await_acks=settings.cloud,
        )
        results |= _measure(swarm, broker.process.pid, cloud, progress)
    return results


def _start_broker(
    stack: ExitStack, binary: str, directory: Path, credentials: list[Credential], cloud_password: str
) -> Mosquitto:
    """Start a Mosquitto that lets in every device and the cloud user; stop it when ``stack`` closes."""
    password_file, acl_file = write_broker_files(directory, credentials, {CLOUD_USER: cloud_password})
    broker = Mosquitto(
        binary,
        directory,
        anonymous=False,
        password_file=password_file,
        acl_file=acl_file,
        max_queued_messages=MAX_QUEUED,
    )
    broker.start()
    stack.callback(broker.stop)
    return broker


def _start_cloud(stack: ExitStack, directory: Path, port: int, cloud_password: str) -> CloudProcess:
    """Start a cloud worker on SQLite logged in as the cloud user; stop it when ``stack`` closes."""
    env = {"FRIGO_CLOUD_MQTT__USERNAME": CLOUD_USER, "FRIGO_CLOUD_MQTT__PASSWORD": cloud_password}
    database_url = f"sqlite:///{directory / 'cloud.db'}"
    process, http_port = start_cloud(database_url, port, "sim-swarm", env)
    stack.callback(stop_cloud, process)
    return CloudProcess(process.pid, http_port, operator_headers(database_url))


def _measure(swarm: Swarm, broker_pid: int, cloud: CloudProcess | None, progress: bool) -> dict[str, Any]:
    """Run the swarm; return its figures and the memory and CPU of each process."""
    sampler = Sampler(broker_pid)
    started = time.monotonic()
    cpu_before, broker_cpu_before = cpu_seconds(), cpu_seconds(broker_pid)
    cloud_cpu_before = tree_cpu_seconds(cloud.pid) if cloud is not None else 0.0
    stats = asyncio.run(_run_swarm(swarm, sampler, progress))
    wall = time.monotonic() - started
    cpu = cpu_seconds() - cpu_before
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu_before
    steady = stats.steady_events_per_s
    figures: dict[str, Any] = {
        "connected_max": stats.connected_max,
        "connected_when_sending_stopped": stats.connected_at_end,
        "ramp_s": _round(stats.ramp_s),
        "published": stats.published,
        "events_per_s_sent_after_ramp": None if steady is None else round(steady),
        "events_per_s_sent_overall": round(stats.published / (stats.sending_s or wall)),
        "pubacked": stats.pubacked,
        "drain_s": _round(stats.drain_s),
        "cloud_acked": stats.acked,
        "cloud_ack_backlog_max": sampler.ack_backlog_max if cloud is not None else None,
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
    if cloud is not None:
        figures |= _cloud_figures(cloud, cloud_cpu_before, wall)
    return figures


def _cloud_figures(cloud: CloudProcess, cpu_before: float, wall: float) -> dict[str, Any]:
    """Return what the cloud worker stored, the duplicates it saw, and its CPU since ``cpu_before``."""
    import httpx

    stored = httpx.get(f"http://127.0.0.1:{cloud.http_port}/stats", timeout=10, headers=cloud.operator).json()
    return {
        "cloud_stored": stored["stored"],
        "cloud_duplicates": stored["duplicates"],
        "cloud_cpu_percent_of_one_core": round(100 * (tree_cpu_seconds(cloud.pid) - cpu_before) / wall, 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
