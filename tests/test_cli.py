"""The `frigo` command line, run as a real process (`python -m frigo`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.client import MQTTv311

from tests.support.connack import connack
from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[1]
CONTRACT_DIR = REPO / "docs" / "contract"
# As `frigo --help` lists them: commands, then the groups of subcommands.
COMMANDS = [
    "demo",
    "broker",
    "contract",
    "devices",
    "pki",
    "retailers",
    "tokens",
    "eval",
    "cloud",
    "edge",
    "sim",
]
HINT = "(set --device-id or FRIGO_EDGE_DEVICE_ID, or pass --config)\n"
SCHEMA_FILES = [
    "availability.schema.json",
    "command.schema.json",
    "config-desired.schema.json",
    "event.schema.json",
    "telemetry.schema.json",
]


def frigo(*args: str, cwd: Path, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m frigo ARGS` in ``cwd`` with no FRIGO_* variables from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")}
    # A wide terminal keeps rich from wrapping names in the help panels.
    env.update(COLUMNS="200", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "frigo", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = frigo("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Usage: python -m frigo [OPTIONS] COMMAND [ARGS]..." in result.stdout
    # Command rows of the rich panel: "│ name   description"; wrapped lines start with spaces.
    assert re.findall(r"^[│|] ([a-z]+) {2,}\S", result.stdout, re.MULTILINE) == COMMANDS


@pytest.mark.parametrize(
    "command",
    [
        *COMMANDS,
        "contract export",
        "cloud migrate",
        "devices provision",
        "devices write-mosquitto",
        "edge adopt",
        "edge reset",
        "eval baskets",
        "eval reorder",
        "pki init",
        "retailers create",
        "tokens admin",
        "sim run",
    ],
)
def test_every_command_has_help(tmp_path: Path, command: str) -> None:
    result = frigo(*command.split(), "--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Usage: python -m frigo {command} [OPTIONS]" in result.stdout
    assert list(tmp_path.iterdir()) == []  # --help creates nothing


def test_contract_export_writes_the_committed_schemas(tmp_path: Path) -> None:
    target = tmp_path / "out" / "contract"

    result = frigo("contract", "export", str(target), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {target / name}"
        for name in [
            "event.schema.json",
            "command.schema.json",
            "telemetry.schema.json",
            "availability.schema.json",
            "config-desired.schema.json",
        ]
    ]
    assert sorted(p.name for p in target.iterdir()) == SCHEMA_FILES
    for name in SCHEMA_FILES:
        assert (target / name).read_bytes() == (CONTRACT_DIR / name).read_bytes(), name


def test_edge_without_device_id_names_the_variable(tmp_path: Path) -> None:
    result = frigo("edge", "--data-dir", str(tmp_path / "data"), cwd=tmp_path, stdin="+4006381333931\n")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: invalid edge settings (from the environment):\n"
        "1 validation error for EdgeSettings\ndevice_id\n  Field required"
    )
    assert result.stderr.endswith(HINT)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_edge_with_invalid_device_id_says_why(tmp_path: Path) -> None:
    result = frigo(
        "edge",
        "--device-id",
        "bad/id",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=tmp_path,
        stdin="+4006381333931\n",
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: invalid edge settings (from the environment):\n"
        "1 validation error for EdgeSettings\ndevice_id\n"
    )
    assert result.stderr.endswith(HINT)
    assert (
        "invalid device id 'bad/id': use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_edge_reports_bad_scanner_lines_and_keeps_reading(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = frigo(
        "edge",
        "--device-id",
        "fridge-1",
        "--data-dir",
        str(data),
        "--mqtt-port",
        str(free_port()),  # nothing listens: nothing gets acknowledged
        "--drain-timeout",
        "1",
        cwd=tmp_path,
        stdin="ab c\n# a comment\n+4006381333931\n-96385074\n",
    )

    # Nothing was acknowledged before the drain timeout: exit code 1.
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["ok seq=1 +1 4006381333931 (now 1)"]
    assert result.stderr.splitlines() == [
        "error: cannot read 'ab c': expected CODE, +CODE, -CODE, 'open CODE', 'discard CODE [reason]' "
        "or 'move CODE LOCATION'",
        "error: 96385074 is not in the fridge: scan it in with +96385074 first",
        "input ended; waiting for the cloud to acknowledge 1 events",
        "gave up waiting: 1 events stay in the outbox and go out on the next start",
    ]
    assert (data / "edge.db").is_file()


def test_the_embedded_broker_admits_only_provisioned_devices_and_the_cloud_user(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cloud.db'}"
    provisioned = frigo("devices", "provision", "kitchen", "--database-url", database, cwd=tmp_path)
    # `devices` needs the schema first, and says so.
    assert provisioned.returncode == 2
    assert "frigo cloud migrate" in provisioned.stderr
    migrated = subprocess.run(
        [sys.executable, "-m", "frigo", "cloud", "--database-url", database, "migrate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "migrated" in migrated.stdout
    provisioned = frigo("devices", "provision", "kitchen", "--database-url", database, cwd=tmp_path)
    assert provisioned.returncode == 0, provisioned.stderr
    secret = provisioned.stdout.splitlines()[1].strip()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRIGO_")}
    env["CLOUD_PW"] = "cloud-secret-for-this-test"
    broker = subprocess.Popen(
        [
            *(sys.executable, "-m", "frigo", "broker", "--port", str(port), "--database-url", database),
            *("--cloud-user", "frigo-cloud", "--cloud-password-env", "CLOUD_PW"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def login(username: str, password: str) -> int:
        # As a fridge logs in: its device id as client id, MQTT 3.1.1.
        return connack(port, username, password, client_id=username, protocol=MQTTv311)

    try:
        assert broker.stdout is not None
        assert "devices authenticated, ACLs enforced" in broker.stdout.readline()
        assert login("kitchen", secret) == 0
        assert login("frigo-cloud", "cloud-secret-for-this-test") == 0
        assert login("kitchen", secret[:-1]) != 0
        assert login("garage", secret) != 0
        assert login("frigo-cloud", "guess") != 0
    finally:
        broker.terminate()
        broker.communicate(timeout=30)
    assert broker.returncode == 0


def test_broker_refuses_a_cloud_user_without_authentication(tmp_path: Path) -> None:
    result = frigo("broker", "--cloud-user", "frigo-cloud", "--cloud-password-env", "X", cwd=tmp_path)

    assert result.returncode == 2
    assert "needs --database-url" in result.stderr


def test_sim_run_lives_a_scenario_and_writes_its_report(tmp_path: Path) -> None:
    result = frigo("sim", "run", "week-in-a-household", "--days", "3", cwd=tmp_path, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "1 household(s), 3 day(s)" in result.stdout
    assert ", 0 refused; report in frigo-sim-runs/week-in-a-household-1" in result.stdout
    report = tmp_path / "frigo-sim-runs" / "week-in-a-household-1"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["events_recorded"] == summary["events_stored"] > 0
    header = (report / "truth.csv").read_text().splitlines()[0]
    assert header == "day,device_id,code,eaten,bought,wasted,missing,stock"


def test_sim_run_names_the_scenarios_it_knows(tmp_path: Path) -> None:
    result = frigo("sim", "run", "no-such-scenario", cwd=tmp_path)

    assert result.returncode == 2
    assert (
        "choose one of chaos, demo, load-10k, offers-month, online-fortnight, quarter-100, "
        "week-in-a-household" in result.stderr
    )


def test_sim_run_paces_virtual_time_when_asked(tmp_path: Path) -> None:
    # One virtual day at 86,400 virtual seconds per wall second takes at least a second.
    result = frigo("sim", "run", "week-in-a-household", "--days", "1", "--speed", "86400", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "frigo-sim-runs" / "week-in-a-household-1" / "summary.json").read_text())
    assert summary["wall_seconds"] >= 0.95


def test_edge_orders_lists_what_the_cloud_told_and_order_answers_it(tmp_path: Path) -> None:
    import uuid
    from datetime import UTC, datetime

    from edge.database import open_database, transaction
    from edge.recorder import Recorder
    from shared.clock import SystemClock
    from shared.messages import OrderLine, OrderUpdated

    data = tmp_path / "data"
    basket = uuid.UUID(int=5)
    args = ("--device-id", "fridge-1", "--data-dir", str(data))
    assert frigo("edge", *args, "orders", cwd=tmp_path).stdout == "no orders\n"
    conn = open_database(data / "edge.db")
    try:
        recorder = Recorder(conn, "fridge-1", SystemClock())
        with transaction(conn):
            recorder.orders.update(
                OrderUpdated(
                    order_id=basket,
                    device_id="fridge-1",
                    status="proposed",
                    lines=(OrderLine(code="4006381333931", quantity=2),),
                ),
                datetime.now(UTC),
            )
    finally:
        conn.close()
    listed = frigo("edge", *args, "orders", cwd=tmp_path)
    assert listed.stdout == f"{basket}  proposed\n    4006381333931×2\n"

    answered = frigo("edge", *args, "order", str(basket), "approve", cwd=tmp_path)
    assert (answered.returncode, answered.stdout) == (0, f"order {basket}: approve\n")
    unknown = frigo("edge", *args, "order", str(uuid.UUID(int=6)), "cancel", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no order 00000000-0000-0000-0000-000000000006 on this fridge" in unknown.stderr
    bad = frigo("edge", *args, "order", str(basket), "maybe", cwd=tmp_path)
    assert bad.returncode == 2  # Typer refuses an answer it does not know, listing the choices
    assert "approve" in bad.stderr
    conn = open_database(data / "edge.db")
    try:
        payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")]
    finally:
        conn.close()
    assert [(p["type"], p["order_id"], p["answer"]) for p in payloads] == [
        ("order_answered", str(basket), "approve")
    ]


def test_edge_consent_sends_the_households_choice(tmp_path: Path) -> None:
    from edge.database import open_database

    args = ("--device-id", "fridge-1", "--data-dir", str(tmp_path / "data"))
    granted = frigo("edge", *args, "consent", "grant", "fresh-foods", "offers", cwd=tmp_path)
    assert (granted.returncode, granted.stdout) == (0, "consent of fresh-foods for offers: grant\n")
    withdrawn = frigo("edge", *args, "consent", "withdraw", "fresh-foods", "ordering", cwd=tmp_path)
    assert withdrawn.returncode == 0
    refused = frigo("edge", *args, "consent", "grant", "Fresh Foods!", "offers", cwd=tmp_path)
    assert refused.returncode == 1
    assert "recipient" in refused.stderr
    conn = open_database(tmp_path / "data" / "edge.db")
    try:
        payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox ORDER BY seq")]
    finally:
        conn.close()
    assert [(p["type"], p["recipient"], p["purpose"], p["action"]) for p in payloads] == [
        ("consent_changed", "fresh-foods", "offers", "grant"),
        ("consent_changed", "fresh-foods", "ordering", "withdraw"),
    ]
