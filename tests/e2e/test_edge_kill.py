"""The edge agent killed with SIGKILL mid-stream and restarted: nothing lost, nothing stored twice."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import httpx
import pytest

from cloud.identity.devices import household_id_for
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.services import Mosquitto

DEVICE = "kill-test"
CODES = ["4006381333931", "96385074", "036000291452", "2000000000015", "2000000000022"]
CONFIRMATION = re.compile(r"^ok seq=(\d+) ([+-])1 (\w+) ")


def agent_command(data_dir: Path, port: int, drain_timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "frigo",
        "edge",
        "--device-id",
        DEVICE,
        "--data-dir",
        str(data_dir),
        "--mqtt-port",
        str(port),
        "--drain-timeout",
        str(drain_timeout),
    ]


def feed(stdin: IO[str], rng: random.Random) -> None:
    """Write scans until the process dies: mostly additions, some removals (which may be refused)."""
    try:
        while True:
            lines = [f"{'-' if rng.random() < 0.3 else '+'}{rng.choice(CODES)}\n" for _ in range(20)]
            stdin.write("".join(lines))
            stdin.flush()
    except (BrokenPipeError, ValueError, OSError):
        return


def read_confirmations(stdout: IO[str], confirmed: dict[int, tuple[str, str]], stop_after: int) -> int:
    """Collect 'ok seq=...' lines; return how many were read before ``stop_after`` was reached."""
    count = 0
    for line in stdout:
        match = CONFIRMATION.match(line)
        assert match is not None, f"unexpected agent output: {line!r}"
        seq, sign, code = int(match[1]), match[2], match[3]
        assert seq not in confirmed, f"seq {seq} confirmed twice"
        confirmed[seq] = (sign, code)
        count += 1
        if count >= stop_after:
            break
    return count


def outbox_rows(path: Path) -> int:
    """Return how many events wait in an agent's outbox (0 if it was killed before creating it)."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]) if "outbox" in tables else 0


@pytest.mark.mosquitto
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kills", "target_events", "scans_between"),
    [pytest.param(10, 2000, (60, 260), id="10-kills"), pytest.param(50, 2500, (5, 80), id="50-kills")],
)
def test_agent_killed_repeatedly_loses_nothing(
    mosquitto: Mosquitto,
    start_cloud: CloudFactory,
    tmp_path: Path,
    kills: int,
    target_events: int,
    scans_between: tuple[int, int],
) -> None:
    with contextlib.ExitStack() as stack:
        run_with_kills(mosquitto, start_cloud, tmp_path, stack, kills, target_events, scans_between)


def run_with_kills(
    mosquitto: Mosquitto,
    start_cloud: CloudFactory,
    tmp_path: Path,
    stack: contextlib.ExitStack,
    kills: int,
    target_events: int,
    scans_between: tuple[int, int],
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    data_dir = tmp_path / "agent"
    rng = random.Random(20261123)
    confirmed: dict[int, tuple[str, str]] = {}
    backlogs: list[int] = []  # unacknowledged events left by each kill
    stderr_log = stack.enter_context((tmp_path / "agent-stderr.log").open("w"))

    for _kill in range(kills):
        process = subprocess.Popen(
            agent_command(data_dir, mosquitto.port, drain_timeout=60),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_log,
            text=True,
            bufsize=1,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        feeder = threading.Thread(target=feed, args=(process.stdin, rng), daemon=True)
        feeder.start()
        if rng.random() < 0.5:
            # Kill after a random number of recorded scans, while publishing goes on.
            read_confirmations(process.stdout, confirmed, stop_after=rng.randint(*scans_between))
            process.send_signal(signal.SIGKILL)
        else:
            # Kill at a random moment from start-up on: connecting, resending, publishing.
            threading.Timer(rng.uniform(0.05, 1.0), process.send_signal, args=(signal.SIGKILL,)).start()
        process.wait(10)
        # Lines printed before the kill are recorded scans too.
        read_confirmations(process.stdout, confirmed, stop_after=sys.maxsize)
        feeder.join(10)
        backlogs.append(outbox_rows(data_dir / "edge.db"))
        process.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()

    # The kills must hit the publish path: most leave events the cloud has not acknowledged yet.
    assert sum(1 for b in backlogs if b > 0) >= kills // 4, backlogs

    # The last run scans the rest in, then waits until the cloud has acknowledged everything.
    with sqlite3.connect(data_dir / "edge.db") as db:
        recorded = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    remaining = max(target_events - recorded, 0)
    final = subprocess.run(
        agent_command(data_dir, mosquitto.port, drain_timeout=60),
        input="".join(f"+{rng.choice(CODES)}\n" for _ in range(remaining)),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert final.returncode == 0, final.stderr
    for line in final.stdout.splitlines():
        match = CONFIRMATION.match(line)
        assert match is not None, line
        confirmed[int(match[1])] = (match[2], match[3])

    with sqlite3.connect(data_dir / "edge.db") as db:
        last_seq = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
        outbox = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        local_inventory = dict(
            db.execute("SELECT code, SUM(quantity) FROM lots GROUP BY code HAVING SUM(quantity) > 0")
        )
    db.close()
    assert last_seq >= target_events
    assert outbox == 0

    household = household_id_for(DEVICE)
    events: list[dict[str, object]] = []
    with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
        after = 0
        while page := client.get(
            f"/households/{household}/events", params={"after": after, "limit": 1000}
        ).json():
            events += page
            after = page[-1]["id"]
        inventory = client.get(f"/households/{household}/inventory").json()

    seqs = sorted(int(str(e["seq"])) for e in events)
    assert seqs == list(range(1, last_seq + 1)), "lost or doubled events"
    assert len({e["event_id"] for e in events}) == last_seq
    by_seq = {e["seq"]: e for e in events}
    for seq, (sign, code) in confirmed.items():
        event = by_seq[seq]
        assert event["code"] == code
        assert event["quantity_delta"] == (1 if sign == "+" else -1)
    assert {i["code"]: i["quantity"] for i in inventory["items"]} == local_inventory
    assert cloud.ingestor.stats.stored == last_seq
