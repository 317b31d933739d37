"""A data folder belongs to one device: claimed at first start, refused to others, handed over on request.

Agents here are never started (no broker); a restart is a stop and a new Agent on the same folder.
The hand-overs are checked for what matters: nothing of either device is lost, and the new device's
numbering never repeats a seq the cloud has seen from it.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge import datafolder
from edge.agent import Agent, read_status
from edge.calibration import CALIBRATION_FILE
from edge.database import open_database
from edge.datafolder import SET_ASIDE, claim, exclusive, hand_over, owner
from edge.errors import DataFolderInUse, ForeignDataFolder, UnsentEvents
from edge.recorder import Recorder
from edge.settings import EdgeSettings
from shared.clock import ManualClock
from shared.errors import InsecureTransport
from shared.messages import decode_event
from shared.mqtt import MqttSettings
from tests.support.services import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MILK = "4006381333931"
EGGS = "96385074"


def settings(data_dir: Path, device_id: str) -> EdgeSettings:
    # Nothing listens on the port, and these agents never start anyway.
    return EdgeSettings(device_id=device_id, data_dir=data_dir, mqtt=MqttSettings(port=free_port()))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def run_agent(folder: Path, device_id: str, clock: ManualClock, *scans: str) -> None:
    """Start an agent as ``device_id`` (without a broker), scan, and stop it."""
    agent = Agent(settings(folder, device_id), clock=clock)
    try:
        for line in scans:
            agent.scan(line)
    finally:
        agent.stop()


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(query))
    finally:
        conn.close()


def outbox(path: Path) -> list[tuple[int, str, str]]:
    """Return (seq, device id, type) of every event waiting in the database at ``path``."""
    events = [decode_event(bytes(p)) for (p,) in rows(path, "SELECT payload FROM outbox ORDER BY seq")]
    return [(e.seq, e.device_id, e.type) for e in events]


@pytest.fixture
def a_with_unsent(folder: Path, clock: ManualClock) -> Path:
    """A folder where device a recorded three scans the cloud has not acknowledged."""
    run_agent(folder, "a", clock, f"+{MILK}", f"+{MILK}", f"+{EGGS}")
    return folder


# claiming -------------------------------------------------------------------------------------


def test_the_first_start_records_the_device_and_later_starts_under_it_go_on(
    folder: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge.datafolder")

    run_agent(folder, "a", clock, f"+{MILK}")
    run_agent(folder, "a", clock, f"+{EGGS}")

    assert rows(folder / "edge.db", "SELECT device_id, since FROM owner") == [("a", T0.isoformat())]
    assert outbox(folder / "edge.db") == [(1, "a", "item_added"), (2, "a", "item_added")]
    assert [r.getMessage() for r in caplog.records] == [f"data folder {folder} now belongs to device a"]


def test_another_device_is_refused_and_finds_the_folder_as_it_was(
    a_with_unsent: Path, clock: ManualClock
) -> None:
    before = outbox(a_with_unsent / "edge.db")

    with pytest.raises(ForeignDataFolder) as refused:
        Agent(settings(a_with_unsent, "b"), clock=clock)

    assert str(refused.value) == (
        f"data folder {a_with_unsent} belongs to device 'a', not 'b' (it holds a's sequence numbers and "
        "3 unsent events, which the cloud would refuse from b): start it with --device-id a, or give b a "
        "data folder of its own (--data-dir); to hand this one over to b, run `frigo edge --device-id b "
        f"--data-dir {a_with_unsent} adopt` (keeps the food in the fridge) or `frigo edge --device-id b "
        f"--data-dir {a_with_unsent} reset` (starts empty), which keep a's data in a copy"
    )
    assert outbox(a_with_unsent / "edge.db") == before
    assert rows(a_with_unsent / "edge.db", "SELECT device_id FROM owner") == [("a",)]
    # Started as a again, it goes on where it stopped and sends the same events as a.
    run_agent(a_with_unsent, "a", clock, f"-{MILK}")
    assert [seq for seq, _, _ in outbox(a_with_unsent / "edge.db")] == [1, 2, 3, 4]


def test_a_folder_from_before_the_check_becomes_the_first_ids_and_says_so(
    folder: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    conn = open_database(folder / "edge.db")
    Recorder(conn, "old", clock).add(MILK)  # as an agent without the check left it
    conn.execute("DELETE FROM owner")
    conn.close()

    run_agent(folder, "old", clock, f"+{EGGS}")

    assert rows(folder / "edge.db", "SELECT device_id FROM owner") == [("old",)]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"data folder {folder} had no device recorded (it predates the check); it now belongs to old, "
            "the id it started with",
        )
    ]
    with pytest.raises(ForeignDataFolder):
        Agent(settings(folder, "new"), clock=clock)


def test_reading_commands_check_the_owner_but_claim_nothing(folder: Path, clock: ManualClock) -> None:
    read_status(settings(folder, "a"))  # status of a fresh folder

    assert rows(folder / "edge.db", "SELECT * FROM owner") == []
    run_agent(folder, "b", clock)
    with pytest.raises(ForeignDataFolder):
        read_status(settings(folder, "a"))
    conn = open_database(folder / "edge.db")
    try:
        claim(conn, folder, "b", T0, record=False)
        assert owner(conn) == "b"
    finally:
        conn.close()


def test_a_password_in_clear_text_is_refused_before_the_folder_is_touched(folder: Path) -> None:
    remote = MqttSettings(host="mqtt.example.org", password="secret")

    with pytest.raises(InsecureTransport):
        Agent(EdgeSettings(device_id="a", data_dir=folder, mqtt=remote))

    assert not folder.exists()


# handing over ---------------------------------------------------------------------------------


def test_adopt_is_refused_while_the_previous_device_has_unsent_events(
    a_with_unsent: Path, clock: ManualClock
) -> None:
    with pytest.raises(UnsentEvents) as refused:
        hand_over(settings(a_with_unsent, "b"), T0, keep_food=True)

    message = str(refused.value)
    assert message.startswith(
        f"device 'a' has 3 events in {a_with_unsent} that the cloud has not acknowledged, and nothing was "
        "changed. Send them first: "
    )
    assert "or add --set-aside-unsent to adopt now" in message
    assert rows(a_with_unsent / "edge.db", "SELECT device_id FROM owner") == [("a",)]
    assert len(outbox(a_with_unsent / "edge.db")) == 3
    assert not (a_with_unsent / SET_ASIDE).exists()


def test_adopt_keeps_the_food_and_moves_the_previous_devices_data_to_a_copy_that_sends_it(
    a_with_unsent: Path, clock: ManualClock
) -> None:
    (a_with_unsent / CALIBRATION_FILE).write_text("{}")
    a_events = outbox(a_with_unsent / "edge.db")

    done = hand_over(settings(a_with_unsent, "b"), T0, keep_food=True, set_aside_unsent=True)

    copy = a_with_unsent / SET_ASIDE / "a-20240501T120000Z"
    assert done.copy == copy
    assert done.report() == [
        f"data folder {a_with_unsent} now belongs to b; it belonged to a",
        "kept: 3 lots of 2 products in the fridge, the shelves' calibration",
        f"set aside in {copy} (a data folder of a's own): a's 3 unsent events, 0 telemetry samples, "
        "0 offers, 0 orders, its alerts, remote configuration and sequence counter (last seq 3)",
        f"to send a's unsent events: frigo edge --device-id a --data-dir {copy}",
        "b's events here start at seq 1",
    ]
    # The folder is b's, with the food, and nothing of a's left in it.
    assert rows(a_with_unsent / "edge.db", "SELECT device_id FROM owner") == [("b",)]
    assert outbox(a_with_unsent / "edge.db") == []
    assert (a_with_unsent / CALIBRATION_FILE).exists()
    agent = Agent(settings(a_with_unsent, "b"), clock=clock)
    try:
        assert agent.inventory() == {MILK: 2, EGGS: 1}
        agent.scan(f"-{MILK}")
    finally:
        agent.stop()
    assert outbox(a_with_unsent / "edge.db") == [(1, "b", "item_consumed")]
    # The copy is a data folder of a's: the same events, which an agent started as a sends.
    assert outbox(copy / "edge.db") == a_events
    assert (copy / CALIBRATION_FILE).exists()
    with pytest.raises(ForeignDataFolder):
        Agent(settings(copy, "b"), clock=clock)
    run_agent(copy, "a", clock)


def test_reset_starts_empty_and_keeps_the_food_in_the_copy(a_with_unsent: Path, clock: ManualClock) -> None:
    done = hand_over(settings(a_with_unsent, "b"), T0, keep_food=False, set_aside_unsent=True)

    assert done.report()[1] == "kept: no food"
    assert done.report()[2].endswith("; the food: 3 lots of 2 products")
    assert rows(a_with_unsent / "edge.db", "SELECT COUNT(*) FROM lots") == [(0,)]
    assert rows(a_with_unsent / "edge.db", "SELECT COUNT(*) FROM products") == [(0,)]
    assert done.copy is not None
    assert rows(done.copy / "edge.db", "SELECT COUNT(*) FROM lots") == [(3,)]


def test_reset_under_the_folders_own_device_keeps_its_unsent_events_and_numbering(
    a_with_unsent: Path, clock: ManualClock
) -> None:
    done = hand_over(settings(a_with_unsent, "a"), T0, keep_food=False)

    assert done.report() == [
        f"data folder {a_with_unsent} stays a's; the food in it is cleared",
        "kept: 3 unsent events (they still go out as a), telemetry, offers, orders, alerts; numbering "
        "goes on at seq 4",
        f"set aside in {done.copy}: 3 lots of 2 products",
    ]
    assert len(outbox(a_with_unsent / "edge.db")) == 3
    run_agent(a_with_unsent, "a", clock, f"+{MILK}")
    assert outbox(a_with_unsent / "edge.db")[-1] == (4, "a", "item_added")


def test_adopt_under_the_owner_and_reset_of_an_empty_folder_change_nothing(
    a_with_unsent: Path, tmp_path: Path
) -> None:
    assert hand_over(settings(a_with_unsent, "a"), T0, keep_food=True).report() == [
        f"data folder {a_with_unsent} belongs to a already: nothing to do"
    ]
    empty = tmp_path / "empty"
    assert hand_over(settings(empty, "c"), T0, keep_food=False).report() == [
        f"data folder {empty} belongs to c already and holds no food: nothing to do"
    ]
    assert not (a_with_unsent / SET_ASIDE).exists()
    assert not (empty / SET_ASIDE).exists()


def test_a_device_adopting_its_folder_back_goes_on_from_its_last_seq(
    a_with_unsent: Path, clock: ManualClock
) -> None:
    hand_over(settings(a_with_unsent, "b"), T0, keep_food=True, set_aside_unsent=True)
    run_agent(a_with_unsent, "b", clock, f"+{MILK}")

    back = hand_over(settings(a_with_unsent, "a"), T0, keep_food=True, set_aside_unsent=True)

    assert back.next_seq == 4
    assert back.copy == a_with_unsent / SET_ASIDE / "b-20240501T120000Z"
    run_agent(a_with_unsent, "a", clock, f"+{EGGS}")
    assert outbox(a_with_unsent / "edge.db") == [(4, "a", "item_added")]
    assert outbox(back.copy / "edge.db") == [(1, "b", "item_added")]


def test_two_hand_overs_in_one_second_get_two_copies(a_with_unsent: Path) -> None:
    first = hand_over(settings(a_with_unsent, "b"), T0, keep_food=True, set_aside_unsent=True)
    hand_over(settings(a_with_unsent, "a"), T0, keep_food=True)
    second = hand_over(settings(a_with_unsent, "b"), T0, keep_food=True)

    assert first.copy == a_with_unsent / SET_ASIDE / "a-20240501T120000Z"
    assert second.copy == a_with_unsent / SET_ASIDE / "a-20240501T120000Z-2"


def test_a_held_folder_refuses_a_second_agent_and_a_hand_over(folder: Path) -> None:
    with exclusive(folder, "start the agent"):
        with pytest.raises(DataFolderInUse) as refused, exclusive(folder, "start the agent"):
            pass
        assert str(refused.value).startswith(
            f"cannot start the agent: an agent is running on data folder {folder} (or a hand-over is "
            "under way); stop it first"
        )
        with pytest.raises(DataFolderInUse, match="cannot adopt the folder"):
            hand_over(settings(folder, "b"), T0, keep_food=True)
    with exclusive(folder, "start the agent"):
        pass  # released


def test_an_event_written_while_the_copy_is_made_is_copied_not_lost(
    a_with_unsent: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[Path] = []

    def set_aside_while_someone_records(
        conn: sqlite3.Connection, data_dir: Path, device: str, now: datetime
    ) -> Path:
        copy = set_aside(conn, data_dir, device, now)
        if not copies:  # `frigo edge --device-id a consent …` in another terminal, just then
            other = open_database(data_dir / "edge.db")
            try:
                Recorder(other, "a", clock).change_consent("fresh-foods", "offers", "grant")
            finally:
                other.close()
        copies.append(copy)
        return copy

    set_aside = datafolder._set_aside
    monkeypatch.setattr(datafolder, "_set_aside", set_aside_while_someone_records)

    done = hand_over(settings(a_with_unsent, "b"), T0, keep_food=True, set_aside_unsent=True)

    assert done.unsent_events == 4
    assert done.copy == copies[-1]
    assert len(copies) == 2
    # The first, incomplete copy was thrown away, and its name taken by the second.
    assert list((a_with_unsent / SET_ASIDE).iterdir()) == [done.copy]
    assert outbox(done.copy / "edge.db")[-1] == (4, "a", "consent_changed")
    assert outbox(a_with_unsent / "edge.db") == []
