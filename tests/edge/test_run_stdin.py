"""describe() and run_stdin() with a real Agent whose uplink is never started (nothing is acknowledged)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

import pytest

from edge.agent import Agent, describe, run_stdin
from edge.consent import ALL_CATEGORIES, ConsentSettings
from edge.database import open_database
from edge.outbox import Outbox
from edge.settings import EdgeSettings
from shared.clock import ManualClock
from shared.messages import (
    CatalogUpdated,
    DataWiped,
    Event,
    ItemAdded,
    ItemConsumed,
    ItemDiscarded,
    ItemMoved,
    ItemOpened,
    OutboxPressure,
    ProductInfo,
)
from shared.mqtt import MqttSettings
from tests.support.services import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVENT_ID = UUID("12345678-1234-5678-1234-567812345678")
MILK = "4006381333931"
EGGS = "96385074"
GRAMMAR = "expected CODE, +CODE, -CODE, 'open CODE', 'discard CODE [reason]' or 'move CODE LOCATION'"


def _agent(tmp_path: Path, consent: ConsentSettings | None = None) -> Agent:
    settings = EdgeSettings(
        device_id="t1",
        data_dir=tmp_path,
        mqtt=MqttSettings(port=free_port()),  # nothing listens, and the uplink never starts anyway
        consent=consent or ConsentSettings(),
    )
    return Agent(settings, clock=ManualClock(T0))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    agent = _agent(tmp_path)
    yield agent
    # Never started: stop() only closes the unconnected client and the database.
    agent.stop()


@pytest.fixture
def sharing(tmp_path: Path) -> Iterator[Agent]:
    """An agent whose household shares consumption detail too."""
    agent = _agent(tmp_path, ConsentSettings(share=ALL_CATEGORIES))
    yield agent
    agent.stop()


@pytest.fixture(autouse=True)
def fast_drain_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let wait_drained look at the outbox every millisecond instead of every 50."""
    monkeypatch.setattr("edge.agent.DRAIN_POLL_S", 0.001)


# describe ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "quantity_now", "line"),
    [
        (
            ItemAdded(event_id=EVENT_ID, device_id="t1", seq=3, occurred_at=T0, code=MILK, lot_id=1),
            2,
            f"ok seq=3 +1 {MILK} (now 2)",
        ),
        (
            ItemAdded(
                event_id=EVENT_ID, device_id="t1", seq=4, occurred_at=T0, code=EGGS, lot_id=2, quantity=6
            ),
            6,
            f"ok seq=4 +6 {EGGS} (now 6)",
        ),
        (
            ItemConsumed(
                event_id=EVENT_ID, device_id="t1", seq=12, occurred_at=T0, code=MILK, lot_id=1, quantity=2
            ),
            0,
            f"ok seq=12 -2 {MILK} (now 0)",
        ),
        (
            ItemConsumed(
                event_id=EVENT_ID,
                device_id="t1",
                seq=13,
                occurred_at=T0,
                code=MILK,
                lot_id=1,
                quantity=0.25,
                source="weight",
            ),
            1.75,
            f"ok seq=13 -0.25 {MILK} (now 1.75)",
        ),
        (
            ItemOpened(
                event_id=EVENT_ID,
                device_id="t1",
                seq=5,
                occurred_at=T0,
                code=MILK,
                lot_id=1,
                best_before=date(2024, 5, 4),
            ),
            1,
            "ok seq=5 item_opened",
        ),
        (
            ItemMoved(
                event_id=EVENT_ID,
                device_id="t1",
                seq=6,
                occurred_at=T0,
                code=MILK,
                lot_id=1,
                from_location="fridge",
                to_location="door",
            ),
            1,
            "ok seq=6 item_moved",
        ),
        (
            ItemDiscarded(
                event_id=EVENT_ID,
                device_id="t1",
                seq=7,
                occurred_at=T0,
                code=MILK,
                lot_id=1,
                quantity=1,
                reason="spoiled",
            ),
            0,
            "ok seq=7 item_discarded",
        ),
        (
            DataWiped(event_id=EVENT_ID, device_id="t1", seq=8, occurred_at=T0, request_id=EVENT_ID),
            0,
            "ok seq=8 data_wiped",
        ),
        (
            OutboxPressure(
                event_id=EVENT_ID,
                device_id="t1",
                seq=9,
                occurred_at=T0,
                level="warning",
                depth=80,
                capacity=100,
                dropped_events=0,
                coalesced_telemetry=0,
            ),
            0,
            "ok seq=9 outbox_pressure",
        ),
    ],
    ids=lambda v: getattr(v, "type", None),
)
def test_describe(event: Event, quantity_now: float, line: str) -> None:
    assert describe(event, quantity_now) == line


# run_stdin -----------------------------------------------------------------------------------------


def test_run_stdin_records_lines_reports_errors_and_gives_up_without_acks(
    sharing: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = io.StringIO(
        "# a comment\n"
        f"+{MILK}\n"
        "\n"
        f"{MILK}\n"
        "ab c\n"
        f"-{EGGS}\n"
        f"-{MILK}\n"
        f"open {MILK}\n"
        f"move {MILK} door\n"
        f"discard {MILK} expired\n"
        "4006381333932\n"
        f"discard {MILK} eaten\n"
        "MILK\n"
    )
    out = io.StringIO()
    started = time.monotonic()
    code = run_stdin(sharing, lines=lines, out=out, drain_timeout=0.01)
    elapsed = time.monotonic() - started
    assert code == 1
    assert 0.01 <= elapsed < 1.0
    assert out.getvalue().splitlines() == [
        f"ok seq=1 +1 {MILK} (now 1)",
        f"ok seq=2 +1 {MILK} (now 2)",
        f"ok seq=3 -1 {MILK} (now 1)",
        "ok seq=4 item_opened",
        "ok seq=5 item_moved",
        "ok seq=6 item_discarded",
    ]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: cannot read 'ab c': {GRAMMAR}",
        f"error: {EGGS} is not in the fridge: scan it in with +{EGGS} first",
        "error: 4006381333932 fails its check digit (expected 1 at the end): scan it again",
        "error: unknown discard reason 'eaten': use expired, spoiled or other",
        "error: cannot read 'MILK': a product code is 8, 12, 13 or 14 digits (GTIN)",
        "input ended; waiting for the cloud to acknowledge 6 events",
        "gave up waiting: 6 events stay in the outbox and go out on the next start",
    ]
    assert sharing.inventory() == {}
    assert sharing.outbox_depth() == 6


def test_a_scan_out_of_a_partly_used_lot_finishes_it_and_leaves_the_next_whole(
    sharing: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    sharing.scan(f"+{MILK}")
    sharing.scan(f"+{MILK}")
    sharing.recorder.consume_lot(1, 0.5)  # the shelf saw half of the first lot go
    out = io.StringIO()
    assert run_stdin(sharing, lines=io.StringIO(f"-{MILK}\n-{MILK}\n"), out=out, drain_timeout=0) == 1
    assert out.getvalue().splitlines() == [
        f"ok seq=4 -0.5 {MILK} (now 1)",
        f"ok seq=5 -1 {MILK} (now 0)",
    ]
    assert (
        capsys.readouterr().err.splitlines()[0]
        == "input ended; waiting for the cloud to acknowledge 5 events"
    )


def test_a_line_recording_two_events_prints_a_line_per_event(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.scan(f"+{MILK}")
    agent.scan(f"+{MILK}")
    agent.recorder.consume_lot(1, 0.5)  # held back: consumption detail is not shared
    out = io.StringIO()
    assert run_stdin(agent, lines=io.StringIO(f"discard {MILK} spoiled\n"), out=out, drain_timeout=0) == 1
    # The use held back goes out before the discard; each line gives the quantity once both are recorded.
    assert out.getvalue().splitlines() == [
        f"ok seq=3 -0.5 {MILK} (now 1)",
        "ok seq=4 item_discarded",
    ]
    assert (
        capsys.readouterr().err.splitlines()[0]
        == "input ended; waiting for the cloud to acknowledge 4 events"
    )


def test_a_line_recorded_but_not_sent_says_so(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    lines = io.StringIO(f"+{MILK}\nopen {MILK}\n# a comment\n\n")
    assert run_stdin(agent, lines=lines, out=out, drain_timeout=0) == 1
    # Openings are consumption detail, not shared by default: recorded here, nothing sent.
    assert out.getvalue().splitlines() == [
        f"ok seq=1 +1 {MILK} (now 1)",
        "ok: recorded here; nothing sent (consent, or a full outbox: see `frigo edge status`)",
    ]
    lot = agent.recorder.inventory.lot(1)
    assert lot is not None
    assert lot.opened_at == T0
    assert capsys.readouterr().err.splitlines() == [
        "input ended; waiting for the cloud to acknowledge 1 events",
        "gave up waiting: 1 events stay in the outbox and go out on the next start",
    ]


def test_nothing_to_do_is_reported_and_reading_goes_on(
    sharing: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    lines = io.StringIO(
        f"+{MILK}\nopen {MILK}\nopen {MILK}\nmove {MILK} fridge\nmove {MILK} door\nmove {MILK} door\n"
        f"-{MILK}\nopen {MILK}\n"
    )
    assert run_stdin(sharing, lines=lines, out=out, drain_timeout=0) == 1
    assert out.getvalue().splitlines() == [
        f"ok seq=1 +1 {MILK} (now 1)",
        "ok seq=2 item_opened",
        "ok seq=3 item_moved",
        f"ok seq=4 -1 {MILK} (now 0)",
    ]
    assert capsys.readouterr().err.splitlines() == [
        f"error: every lot of {MILK} is open already",
        f"error: every lot of {MILK} is in the fridge",
        f"error: every lot of {MILK} is in the door",
        # Once none is left, it is not in the fridge at all.
        f"error: {MILK} is not in the fridge: scan it in with +{MILK} first",
        "input ended; waiting for the cloud to acknowledge 4 events",
        "gave up waiting: 4 events stay in the outbox and go out on the next start",
    ]


def test_a_product_kept_in_millilitres_goes_in_and_out_a_pack_at_a_time(
    sharing: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    sharing.handle_command(
        CatalogUpdated(
            device_id="t1", products=(ProductInfo(code=MILK, name="Milk 1 l", unit="ml", unit_grams=1000),)
        )
    )
    out = io.StringIO()
    assert (
        run_stdin(sharing, lines=io.StringIO(f"+{MILK}\n+{MILK}\n-{MILK}\n"), out=out, drain_timeout=0) == 1
    )
    assert out.getvalue().splitlines() == [
        f"ok seq=1 +1000 {MILK} (now 1000)",
        f"ok seq=2 +1000 {MILK} (now 2000)",
        f"ok seq=3 -1000 {MILK} (now 1000)",
    ]
    assert (
        capsys.readouterr().err.splitlines()[0]
        == "input ended; waiting for the cloud to acknowledge 3 events"
    )


def test_run_stdin_returns_zero_when_nothing_waits(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert run_stdin(agent, lines=io.StringIO(f"\n# only comments\n-{MILK}\n"), out=out, drain_timeout=0) == 0
    assert out.getvalue() == ""
    assert capsys.readouterr().err.splitlines() == [
        f"error: {MILK} is not in the fridge: scan it in with +{MILK} first",
    ]


def test_run_stdin_returns_zero_once_acknowledged_before_the_end(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    def lines() -> Iterator[str]:
        yield f"+{MILK}\n"
        yield f"+{EGGS}\n"
        # The cloud acknowledges before the input ends: the wait finds an empty outbox.
        agent.recorder.outbox.acknowledge([(1, 2)])

    out = io.StringIO()
    assert run_stdin(agent, lines=lines(), out=out, drain_timeout=0) == 0
    assert out.getvalue().splitlines() == [f"ok seq=1 +1 {MILK} (now 1)", f"ok seq=2 +1 {EGGS} (now 1)"]
    assert capsys.readouterr().err == ""


def test_run_stdin_waits_for_the_acknowledgement(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    def acknowledge() -> None:
        # As the uplink does: on a connection of its own, from another thread.
        conn = open_database(agent.settings.db_path)
        try:
            Outbox(conn).acknowledge([(1, 1)])
        finally:
            conn.close()

    timer = threading.Timer(0.02, acknowledge)

    def lines() -> Iterator[str]:
        yield f"+{MILK}\n"
        timer.start()

    try:
        assert run_stdin(agent, lines=lines(), out=io.StringIO(), drain_timeout=10) == 0
    finally:
        timer.join()
    assert capsys.readouterr().err.splitlines() == [
        "input ended; waiting for the cloud to acknowledge 1 events"
    ]
    assert agent.outbox_depth() == 0


def test_wait_drained(agent: Agent) -> None:
    assert agent.wait_drained(0)
    agent.scan(MILK)
    assert not agent.wait_drained(0)
    started = time.monotonic()
    assert not agent.wait_drained(0.01)
    assert time.monotonic() - started >= 0.01
    agent.recorder.outbox.acknowledge([(1, 1)])
    assert agent.wait_drained(0)
