"""describe() and run_stdin() with a real Agent whose uplink is never started."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from edge.agent import Agent, describe, run_stdin
from edge.errors import NotInFridge, ScanError
from edge.settings import EdgeSettings
from shared.clock import ManualClock
from shared.messages import ItemAdded, ItemRemoved, decode_event
from shared.mqtt import MqttSettings

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVENT_ID = UUID("12345678-1234-5678-1234-567812345678")


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    settings = EdgeSettings(device_id="t1", data_dir=tmp_path, mqtt=MqttSettings(port=_unused_port()))
    agent = Agent(settings, clock=ManualClock(T0))
    yield agent
    # Never started: stop() only closes the unconnected client and the database.
    agent.stop()


def test_describe_added() -> None:
    event = ItemAdded(event_id=EVENT_ID, device_id="t1", seq=3, occurred_at=T0, code="MILK")
    assert describe(event, 2) == "ok seq=3 +1 MILK (now 2)"


def test_describe_removed() -> None:
    event = ItemRemoved(
        event_id=EVENT_ID, device_id="t1", seq=12, occurred_at=T0, code="4006381333931", quantity=2
    )
    assert describe(event, 0) == "ok seq=12 -2 4006381333931 (now 0)"


def test_run_stdin_records_lines_and_gives_up_without_acks(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = io.StringIO("# a comment\n+MILK\n\nMILK\nab c\n-EGGS\n-MILK\n")
    out = io.StringIO()
    started = time.monotonic()
    code = run_stdin(agent, lines=lines, out=out, drain_timeout=0.2)
    elapsed = time.monotonic() - started
    assert code == 1
    assert 0.2 <= elapsed < 1.0
    assert out.getvalue().splitlines() == [
        "ok seq=1 +1 MILK (now 1)",
        "ok seq=2 +1 MILK (now 2)",
        "ok seq=3 -1 MILK (now 1)",
    ]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "error: cannot read scan 'ab c': expected CODE, +CODE or -CODE with a code of 1-48 letters or digits",
        "error: EGGS is not in the fridge: scan it in with +EGGS first",
        "input ended; waiting for the cloud to acknowledge 3 events",
        "gave up waiting: 3 events stay in the outbox and go out on the next start",
    ]
    assert agent.inventory() == {"MILK": 1}
    assert agent.outbox_depth() == 3


def test_run_stdin_returns_zero_when_nothing_waits(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert run_stdin(agent, lines=io.StringIO("\n# only comments\n-MILK\n"), out=out, drain_timeout=0.2) == 0
    assert out.getvalue() == ""
    assert capsys.readouterr().err.splitlines() == [
        "error: MILK is not in the fridge: scan it in with +MILK first",
    ]


def test_run_stdin_returns_zero_once_acknowledged(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    # Acknowledged before the input ends: the wait finds an empty outbox.
    agent.scan("+MILK")
    agent.recorder.outbox.acknowledge([(1, 1)])
    assert run_stdin(agent, lines=io.StringIO(""), out=out, drain_timeout=0.2) == 0
    assert capsys.readouterr().err == ""


def test_agent_methods_without_broker(agent: Agent) -> None:
    assert agent.device_id == "t1"
    assert not agent.uplink.connected
    assert agent.scan("   ") is None
    assert agent.scan("# comment") is None
    added = agent.scan("+4006381333931")
    assert isinstance(added, ItemAdded)
    assert (added.device_id, added.seq, added.occurred_at) == ("t1", 1, T0)
    assert agent.quantity("4006381333931") == 1
    removed = agent.scan("-4006381333931")
    assert isinstance(removed, ItemRemoved)
    assert removed.seq == 2
    assert agent.quantity("4006381333931") == 0
    assert agent.inventory() == {}
    assert agent.outbox_depth() == 2
    with pytest.raises(NotInFridge):
        agent.scan("-4006381333931")
    with pytest.raises(ScanError):
        agent.scan("++1")
    assert agent.outbox_depth() == 2
    payloads = agent.recorder.outbox.pending(after=0, limit=10)
    assert [decode_event(payload) for _, payload in payloads] == [added, removed]


def test_wait_drained(agent: Agent) -> None:
    assert agent.wait_drained(0)
    agent.scan("X1")
    assert not agent.wait_drained(0)
    assert not agent.wait_drained(0.05)
    agent.recorder.outbox.acknowledge([(1, 1)])
    assert agent.wait_drained(0)


def test_database_lives_in_data_dir(agent: Agent, tmp_path: Path) -> None:
    assert agent.settings.db_path == tmp_path / "edge.db"
    assert (tmp_path / "edge.db").is_file()
