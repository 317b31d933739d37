"""Measure what the PBKDF2 iteration count of Mosquitto's password hashes (``$7$``) costs.

For each count: hashing device secrets (as `frigo devices provision` does, one per device), and a
Mosquitto of its own with a password file of ``--devices`` devices: its start, a reload (SIGHUP
until a device added to the file can log in), and logins sent at once, as a fleet reconnecting
after a broker restart sends them (right password, wrong password for a known user, unknown user):
as many as Mosquitto checks in ~10 s, at most ``--logins``, with Mosquitto's CPU time. Prints one
JSON object.

    .venv/bin/python -m bench.mosquitto_hashes [--devices 10000] [--iterations 101 210000]

Mosquitto checks a hash only at login, so the file's lines need not all be distinct: the devices
that log in get hashes of their own secrets, the others a copy of one hash with the same
count (hashing 10,000 secrets at 210,000 iterations would take the bench half an hour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.identity.devices import acl_text, mosquitto_hash
from shared.files import replace_file
from simulator.load.packets import connect_packet
from simulator.load.procfs import cpu_seconds
from simulator.mosquitto import Mosquitto, mosquitto_binary

CLOUD_USER = "cloud-1"
# Not 0 (no limit): Mosquitto 2.0.11 with 0 disconnects a client after a QoS 1 publish the ACL denies.
MAX_QUEUED = 1_000_000
# How often a figure is taken; the median is reported.
REPEAT = 3
# Logins of each kind: enough for ~10 s of Mosquitto's checking, but no fewer than 20.
LOGIN_BUDGET_S = 10.0
MIN_LOGINS = 20
ACCEPTED, NOT_AUTHORIZED = 0, 5


def hash_seconds(iterations: int, count: int) -> float:
    """Return the seconds one hash of a device secret takes, over ``count`` secrets."""
    pending = [secrets.token_urlsafe(32) for _ in range(count)]
    started = time.perf_counter()
    for secret in pending:
        mosquitto_hash(secret, iterations=iterations)
    return (time.perf_counter() - started) / count


def write_files(
    directory: Path, iterations: int, devices: int, own: int
) -> tuple[Path, Path, dict[str, str]]:
    """Write a password file of ``devices`` devices and the cloud user; return it, the ACL file and
    the secrets of the first ``own`` devices."""
    names = [f"bench-{n:05d}" for n in range(devices)]
    known = {name: secrets.token_urlsafe(32) for name in names[:own]}
    shared = mosquitto_hash(secrets.token_urlsafe(32), iterations=iterations)
    lines = [f"{name}:{mosquitto_hash(known[name], iterations=iterations)}\n" for name in names[:own]]
    lines += [f"{name}:{shared}\n" for name in names[own:]]
    lines.append(f"{CLOUD_USER}:{mosquitto_hash('cloud-password', iterations=iterations)}\n")
    password_file, acl_file = directory / "passwd", directory / "acl"
    replace_file(password_file, "".join(lines))
    replace_file(acl_file, acl_text([CLOUD_USER]))
    return password_file, acl_file, known


async def _login(port: int, username: str, password: str) -> int:
    """Return the CONNACK return code of one MQTT 3.1.1 login."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(connect_packet(username, username, password, keepalive_s=60))
        await writer.drain()
        return (await reader.readexactly(4))[3]
    finally:
        writer.close()
        await writer.wait_closed()


def logins(broker: Mosquitto, credentials: Sequence[tuple[str, str]], expected: int) -> dict[str, float]:
    """Send every login at once; return how long Mosquitto took, its CPU time, and logins/s."""
    assert broker.process is not None
    cpu_before, started = cpu_seconds(broker.process.pid), time.perf_counter()

    async def run() -> list[int]:
        return await asyncio.gather(*(_login(broker.port, user, pw) for user, pw in credentials))

    codes = asyncio.run(run())
    wall = time.perf_counter() - started
    cpu = cpu_seconds(broker.process.pid) - cpu_before
    assert set(codes) == {expected}, f"expected return code {expected}, got {sorted(set(codes))}"
    return {
        "seconds": round(wall, 3),
        "mosquitto_cpu_ms_per_login": round(1000 * cpu / len(credentials), 3),
        "logins_per_s": round(len(credentials) / wall, 1),
    }


def reload_seconds(broker: Mosquitto, password_file: Path, iterations: int) -> float:
    """Add a device to the password file, send SIGHUP, and return how long until it can log in."""
    name, secret = f"bench-new-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    with password_file.open("a", encoding="utf-8") as file:
        file.write(f"{name}:{mosquitto_hash(secret, iterations=iterations)}\n")
    assert broker.process is not None
    started = time.perf_counter()
    broker.process.send_signal(signal.SIGHUP)
    while asyncio.run(_login(broker.port, name, secret)) != ACCEPTED:
        if time.perf_counter() - started > 120:
            raise TimeoutError("Mosquitto did not take the new device in 120 s")
        time.sleep(0.01)
    return time.perf_counter() - started


def measure(binary: str, iterations: int, devices: int, most: int, hash_sample: int) -> dict[str, Any]:
    """Return the figures of one iteration count."""
    per_hash = hash_seconds(iterations, hash_sample)
    # As many logins as Mosquitto checks in LOGIN_BUDGET_S, within [MIN_LOGINS, most].
    count = min(most, devices, max(MIN_LOGINS, int(LOGIN_BUDGET_S / per_hash)))
    figures: dict[str, Any] = {
        "hash_ms": round(1000 * per_hash, 3),
        "hashes_timed": hash_sample,
        f"hashing_{devices}_devices_s": round(per_hash * devices, 1),
        "logins_of_each_kind": count,
    }
    with tempfile.TemporaryDirectory(prefix="frigo-bench-hashes-") as tmp:
        directory = Path(tmp)
        password_file, acl_file, known = write_files(directory, iterations, devices, count)
        starts, reloads = [], []
        broker = Mosquitto(
            binary,
            directory,
            anonymous=False,
            password_file=password_file,
            acl_file=acl_file,
            max_queued_messages=MAX_QUEUED,
        )
        for _ in range(REPEAT):
            started = time.perf_counter()
            broker.start()
            starts.append(time.perf_counter() - started)
            reloads.append(reload_seconds(broker, password_file, iterations))
            broker.stop()
        broker.start()
        try:
            figures["mosquitto_start_s"] = round(statistics.median(starts), 3)
            figures["mosquitto_reload_s"] = round(statistics.median(reloads), 3)
            figures["logins_right_password"] = logins(broker, list(known.items()), ACCEPTED)
            wrong = [(CLOUD_USER, secrets.token_urlsafe(32)) for _ in range(count)]
            figures["logins_wrong_password_known_user"] = logins(broker, wrong, NOT_AUTHORIZED)
            unknown = [(f"nobody-{n}", "guess") for n in range(count)]
            figures["logins_unknown_user"] = logins(broker, unknown, NOT_AUTHORIZED)
        finally:
            broker.stop()
    rate = figures["logins_right_password"]["logins_per_s"]
    figures[f"reconnecting_{devices}_devices_s"] = round(devices / rate, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000, help="devices in the password file")
    parser.add_argument("--iterations", type=int, nargs="+", default=[101, 210_000])
    parser.add_argument(
        "--logins",
        type=int,
        default=10_000,
        help="most logins sent at once, of each kind (see LOGIN_BUDGET_S)",
    )
    parser.add_argument("--hash-sample", type=int, default=20, help="secrets hashed to time one hash")
    args = parser.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "devices": args.devices,
    }
    for iterations in args.iterations:
        results[str(iterations)] = measure(binary, iterations, args.devices, args.logins, args.hash_sample)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
