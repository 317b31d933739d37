"""The writer process: batches validated and committed in a child process, which may die."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import EVENTS
from cloud.identity.devices import household_id_for
from cloud.ingest.stats import IngestCounts
from cloud.ingest.writer import WriterConfig, WriterError, WriterProcess
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared import topics
from shared.messages import EventsAcknowledged
from simulator.household import VirtualHousehold
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.factories import T0, added, msg
from tests.support.services import Mosquitto, free_port


def config(database_url: str) -> WriterConfig:
    return WriterConfig(
        database_url=database_url, auto_enroll=True, max_dead_letters=100, log_level=30, log_json=False
    )


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[WriterProcess]:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = create_db_engine(url)
    create_schema(engine)
    engine.dispose()
    process = WriterProcess(config(url))
    process.start()
    yield process
    process.stop()


RECEIVED = T0 + timedelta(minutes=1)


def test_a_batch_comes_back_as_acks_and_counter_changes(writer: WriterProcess) -> None:
    batch = [msg(added("fridge-1", seq)) for seq in (1, 2, 3)] + [(topics.events("fridge-1"), b"junk")]

    outcome = writer.process(batch, RECEIVED)

    assert outcome.error is None
    assert outcome.acks == [EventsAcknowledged(device_id="fridge-1", ranges=[(1, 3)])]
    assert outcome.counts == IngestCounts(
        received=4,
        stored=3,
        duplicates=0,
        batches=1,
        dead_letters=1,
        dead_letter_failures=0,
        rejected=Counter({"invalid_payload": 1}),
    )
    assert outcome.batch_size == 4
    assert outcome.commit_seconds is not None
    assert outcome.commit_seconds > 0


def test_events_are_stamped_with_the_time_the_worker_received_them(
    writer: WriterProcess, tmp_path: Path
) -> None:
    writer.process([msg(added("fridge-1", 1))], RECEIVED)  # a virtual time, as in a simulation

    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    with engine.connect() as connection:
        (received,) = connection.execute(select(EVENTS.c.received_at)).scalars().all()
    engine.dispose()
    assert received.replace(tzinfo=received.tzinfo or RECEIVED.tzinfo) == RECEIVED


def test_a_killed_writer_is_replaced_and_the_resent_batch_is_stored_once(
    writer: WriterProcess, tmp_path: Path
) -> None:
    batch = [msg(added("fridge-1", seq)) for seq in range(1, 11)]
    writer.process(batch[:5], RECEIVED)
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)

    with pytest.raises(WriterError, match="died"):
        writer.process(batch, RECEIVED)
    assert writer.pid not in (None, first)

    outcome = writer.process(batch, RECEIVED)  # as the devices resend it
    assert outcome.acks == [EventsAcknowledged(device_id="fridge-1", ranges=[(1, 10)])]
    assert (outcome.counts.stored, outcome.counts.duplicates) == (5, 5)
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(EVENTS)).scalar_one() == 10
    engine.dispose()


def test_a_writer_that_cannot_reach_its_database_says_so() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"

    with pytest.raises(WriterError, match="could not start"):
        WriterProcess(config(url)).start()


@pytest.mark.mosquitto
def test_a_worker_whose_writer_is_killed_mid_stream_loses_nothing(
    mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(mosquitto.mqtt(), f"sqlite:///{tmp_path / 'cloud.db'}")
    writer = cloud.ingestor.writer
    assert writer is not None
    assert writer.pid is not None
    agent = Agent(
        EdgeSettings(
            device_id="fridge-1", data_dir=tmp_path / "fridge", mqtt=mosquitto.mqtt(), resend_after_s=1
        )
    )
    household = VirtualHousehold(seed=1)
    agent.start()
    try:
        killed = None
        for n in range(600):
            agent.scan(household.next_line(agent.quantity))
            if n == 300:
                killed = writer.pid
                assert killed is not None
                os.kill(killed, signal.SIGKILL)
        assert agent.wait_drained(timeout=60), f"{agent.outbox_depth()} events never acknowledged"
        assert writer.pid not in (None, killed)
        expected = agent.recorder.outbox.last_seq()
        with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
            seqs: list[int] = []
            after = 0
            while page := client.get(
                f"/households/{household_id_for('fridge-1')}/events", params={"after": after, "limit": 1000}
            ).json():
                seqs += [e["seq"] for e in page]
                after = page[-1]["id"]
        assert sorted(seqs) == list(range(1, expected + 1))  # the resent ones were stored later
    finally:
        agent.stop()
