"""A worker asked to stop: its writer process ignores the signals meant for the worker, and what
is queued is committed and acknowledged before the writer goes."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import EVENTS
from cloud.ingest.ingestor import Ingestor
from cloud.ingest.writer import WriterConfig, WriterProcess, WriterStopped
from shared.clock import ManualClock
from shared.messages import EventsAcknowledged
from tests.support.factories import T0, added, msg


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = create_db_engine(url)
    create_schema(engine)
    engine.dispose()
    return url


def writer_for(url: str) -> WriterProcess:
    return WriterProcess(
        WriterConfig(database_url=url, auto_enroll=True, max_dead_letters=100, log_level=30, log_json=False)
    )


def stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(EVENTS)).scalar_one())


def test_the_writer_ignores_sigint_and_sigterm_and_stops_when_told(url: str) -> None:
    writer = writer_for(url)
    writer.start()
    pid = writer.pid
    assert pid is not None
    try:
        # As a terminal's Ctrl-C or a service manager's stop reaches the whole process group.
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)

        outcome = writer.process([msg(added("fridge-1", 1))], T0)

        assert outcome.error is None
        assert outcome.acks == [EventsAcknowledged(device_id="fridge-1", ranges=[(1, 1)])]
        assert writer.pid == pid  # the same child: it did not die
    finally:
        writer.stop()
    assert writer.pid is None


def test_a_stopped_writer_refuses_batches_without_restarting_or_an_error(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = writer_for(url)
    writer.start()
    writer.stop()

    with caplog.at_level(logging.WARNING), pytest.raises(WriterStopped, match="stopping"):
        writer.process([msg(added("fridge-1", 1))], T0)

    assert writer.pid is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_stop_commits_and_acknowledges_the_queue_before_the_writer_goes(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(url)
    acks: list[EventsAcknowledged] = []
    # Batches wait an hour to fill: only stop() makes these go through.
    ingestor = Ingestor(
        engine, acks.append, ManualClock(T0), batch_interval_s=3600, auto_enroll=True, writer=writer_for(url)
    )
    ingestor.start()
    try:
        for seq in range(1, 51):
            ingestor.submit(*msg(added("fridge-1", seq)))
    finally:
        with caplog.at_level(logging.WARNING):
            ingestor.stop(timeout=30)

    assert stored(engine) == 50
    assert acks == [EventsAcknowledged(device_id="fridge-1", ranges=[(1, 50)])]
    assert ingestor.writer is not None
    assert ingestor.writer.pid is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    engine.dispose()
