"""The data-folder mix-up, end to end: a refusal at start, and nothing lost from either device.

Device a records scans while its broker is away, so they wait unsent in its folder. Then `frigo edge`
is started on that folder as device b: before the check, b inherited a's inventory and sequence
numbers, the cloud refused b's batches (they carried a's events) and the agent resent them forever.
Now b is refused at start with one line saying what to do; both ways out end with every event of
both devices stored by a real cloud behind a real Mosquitto.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from cloud.identity.devices import household_id_for
from cloud.service import CloudService
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.services import Mosquitto, free_port

MILK, EGGS, MUSTARD = "4006381333931", "96385074", "036000291452"


def frigo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `python -m frigo ARGS` without the caller's FRIGO_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "frigo", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")} | {"COLUMNS": "200"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def edge(
    device_id: str, data: Path, port: int, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the agent until its input ends and the cloud has acknowledged everything (or ``timeout``)."""
    return frigo(
        *("edge", "--device-id", device_id, "--data-dir", str(data)),
        *("--mqtt-port", str(port), "--mqtt-protocol", "5", "--drain-timeout", str(timeout)),
        stdin=stdin,
    )


def waiting(data: Path) -> list[tuple[int, str]]:
    """Return (seq, device id) of each event in the folder's outbox."""
    with closing(sqlite3.connect(data / "edge.db")) as db:
        payloads = db.execute("SELECT seq, json_extract(payload, '$.device_id') FROM outbox ORDER BY seq")
        return [(int(seq), str(device)) for seq, device in payloads]


def stored(cloud: CloudService, device_id: str) -> list[tuple[int, str]]:
    """Return (seq, code) of each event of ``device_id`` the cloud stored."""
    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
        events = client.get(
            f"/households/{household_id_for(device_id)}/events", params={"limit": 1000}
        ).json()
    assert all(e["device_id"] == device_id for e in events)
    return sorted((int(e["seq"]), str(e.get("code"))) for e in events)


@pytest.fixture
def a_offline(tmp_path: Path) -> Path:
    """A's data folder with three scans the cloud never got: the broker was away."""
    data = tmp_path / "data"
    result = edge("a", data, free_port(), stdin=f"+{MILK}\n+{MILK}\n+{EGGS}\n", timeout=0.5)
    assert result.returncode == 1  # gave up waiting for acknowledgements
    assert waiting(data) == [(1, "a"), (2, "a"), (3, "a")]
    return data


def start_as_b_is_refused(data: Path, port: int) -> None:
    result = edge("b", data, port, stdin=f"+{MUSTARD}\n")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: data folder {data} belongs to device 'a', not 'b' (it holds a's sequence numbers and 3 "
        "unsent events, which the cloud would refuse from b): start it with --device-id a, or give b a data "
        "folder of its own (--data-dir); to hand this one over to b, run `frigo edge --device-id b "
        f"--data-dir {data} adopt` (keeps the food in the fridge) or `frigo edge --device-id b --data-dir "
        f"{data} reset` (starts empty), which keep a's data in a copy"
    ]
    assert waiting(data) == [(1, "a"), (2, "a"), (3, "a")]  # untouched


@pytest.mark.mosquitto
def test_refused_b_then_a_sends_its_events_and_b_adopts_the_folder(
    a_offline: Path, mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    start_as_b_is_refused(a_offline, mosquitto.port)
    adopt = frigo("edge", "--device-id", "b", "--data-dir", str(a_offline), "adopt")
    assert adopt.returncode == 1
    assert adopt.stderr.startswith(
        f"error: device 'a' has 3 events in {a_offline} that the cloud has not acknowledged, and nothing "
        "was changed. Send them first:"
    )

    # The way out the refusal names first: a sends what it has, then b adopts an empty outbox.
    assert edge("a", a_offline, mosquitto.port).returncode == 0
    adopt = frigo("edge", "--device-id", "b", "--data-dir", str(a_offline), "adopt")
    assert adopt.returncode == 0, adopt.stderr
    assert adopt.stdout.splitlines()[:2] == [
        f"data folder {a_offline} now belongs to b; it belonged to a",
        "kept: 3 lots of 2 products in the fridge",
    ]
    b = edge("b", a_offline, mosquitto.port, stdin=f"-{MILK}\n+{MUSTARD}\n")
    assert b.returncode == 0, b.stderr
    assert b.stdout.splitlines() == [f"ok seq=1 -1 {MILK} (now 1)", f"ok seq=2 +1 {MUSTARD} (now 1)"]

    assert stored(cloud, "a") == [(1, MILK), (2, MILK), (3, EGGS)]
    assert stored(cloud, "b") == [(1, MILK), (2, MUSTARD)]


@pytest.mark.mosquitto
def test_b_adopts_with_a_unsent_events_set_aside_and_the_copy_sends_them_as_a(
    a_offline: Path, mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    start_as_b_is_refused(a_offline, mosquitto.port)

    adopt = frigo("edge", "--device-id", "b", "--data-dir", str(a_offline), "adopt", "--set-aside-unsent")

    assert adopt.returncode == 0, adopt.stderr
    [copy] = (a_offline / "set-aside").iterdir()
    assert f"to send a's unsent events: frigo edge --device-id a --data-dir {copy}" in adopt.stdout
    b = edge("b", a_offline, mosquitto.port, stdin=f"+{MUSTARD}\n")
    assert b.returncode == 0, b.stderr
    assert b.stdout == f"ok seq=1 +1 {MUSTARD} (now 1)\n"
    a = edge("a", copy, mosquitto.port)
    assert a.returncode == 0, a.stderr

    assert stored(cloud, "a") == [(1, MILK), (2, MILK), (3, EGGS)]
    assert stored(cloud, "b") == [(1, MUSTARD)]
    assert waiting(a_offline) == []
    assert waiting(copy) == []
