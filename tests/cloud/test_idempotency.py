"""Idempotency keys (cloud/api/idempotency.py) are stored for live credentials only, and purged.

Over HTTP against a running worker on SQLite and PostgreSQL: a thousand POSTs with junk, expired or
no tokens and an Idempotency-Key each leave no row; a live token's key is stored under its
credential, the same whether it came as the bearer header or behind the dashboard's session. The
planning schedule's purge job deletes keys past their retention at its (manual) clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, insert, select
from sqlmodel import Session

from cloud import scheduler
from cloud.api.dependencies import WEB_COOKIE, WEB_HEADER
from cloud.api.idempotency import KEEP
from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import IDEMPOTENCY_KEYS
from cloud.identity.sessions import holder_of, start_session
from cloud.identity.tokens import issue_token
from cloud.scheduler import PlanningSchedule
from cloud.service import CloudService
from shared.clock import ManualClock
from tests.support.cloud import DATABASES, cloud_worker, database
from tests.support.factories import added, msg

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOUSEHOLD = "hh-fridge-a"
ORDERS = f"/households/{HOUSEHOLD}/orders"
JUNK_POSTS = 1000


@pytest.fixture(scope="module", params=DATABASES)
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudService]:
    def enrol(service: CloudService) -> None:
        service.ingestor.process([msg(added("fridge-a", 1))])

    with (
        database(request.param, tmp_path_factory.mktemp("idempotency")) as url,
        # The junk is meant to reach the Idempotency-Key middleware, not to stop at the address's rate.
        cloud_worker(
            url, ManualClock(NOW), "idempotency", prepare=enrol, rate_limit_address="100000/minute"
        ) as service,
    ):
        yield service


def stored_keys(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(IDEMPOTENCY_KEYS.c.principal, IDEMPOTENCY_KEYS.c.key))
        return [(str(principal), str(key)) for principal, key in rows]


def token(engine: Engine, *, issued: datetime = NOW, lifetime: timedelta | None = None) -> str:
    with Session(engine) as session:
        made = issue_token(session, "household", HOUSEHOLD, issued, lifetime=lifetime)
        session.commit()
    return made


def test_a_thousand_posts_without_a_live_token_store_no_key(cloud: CloudService) -> None:
    expired = token(cloud.engine, issued=NOW - timedelta(days=2), lifetime=timedelta(days=1))
    secrets_sent = [
        None,  # no Authorization header at all
        "junk",
        f"frh_{secrets.token_urlsafe(32)}",  # the shape of a household's token, but no one's
        f"fra_{secrets.token_urlsafe(32)}",
        f"frk_{secrets.token_urlsafe(32)}",
        expired,
    ]
    before = len(stored_keys(cloud.engine))
    statuses: set[int] = set()
    with httpx.Client(base_url=cloud.url, timeout=30) as client:
        for n in range(JUNK_POSTS):
            secret = secrets_sent[n % len(secrets_sent)]
            headers = {"Idempotency-Key": f"junk-{n}"}
            if secret is not None:
                headers["Authorization"] = f"Bearer {secret}"
            statuses.add(client.post(ORDERS, json={"lines": []}, headers=headers).status_code)
    assert statuses == {401}
    assert len(stored_keys(cloud.engine)) == before


def test_a_live_tokens_key_is_stored_under_its_credential_whichever_way_it_comes(
    cloud: CloudService,
) -> None:
    live = token(cloud.engine)
    with Session(cloud.engine) as session:
        connection = session.connection()
        holder = holder_of(connection, live, NOW)
        assert holder is not None
        session_id = start_session(connection, holder, HOUSEHOLD, NOW)
        session.commit()
    key = f"weekly-{secrets.token_hex(4)}"
    # Refused (422): a refusal is stored and replayed like any answer.
    body: dict[str, list[str]] = {"lines": []}
    with httpx.Client(base_url=cloud.url, timeout=30) as client:
        first = client.post(
            ORDERS,
            json=body,
            headers={"Idempotency-Key": key, WEB_HEADER: "1", "Cookie": f"{WEB_COOKIE}={session_id}"},
        )
        again = client.post(
            ORDERS, json=body, headers={"Idempotency-Key": key, "Authorization": f"Bearer {live}"}
        )
    assert first.status_code == again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [principal for principal, stored in stored_keys(cloud.engine) if stored == key] == [
        holder.credential
    ]


@pytest.fixture
def keys_at(tmp_path: Path) -> Iterator[tuple[Engine, ManualClock]]:
    """A database holding one key made just over KEEP ago and one made just under it."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")  # a file: the job's thread sees it
    create_schema(engine)
    clock = ManualClock(NOW)
    with engine.begin() as connection:
        for name, age in (("old", KEEP + timedelta(minutes=1)), ("recent", KEEP - timedelta(hours=1))):
            connection.execute(
                insert(IDEMPOTENCY_KEYS).values(
                    principal="token:1", key=name, request_hash="0" * 64, status="done", created_at=NOW - age
                )
            )
    yield engine, clock
    engine.dispose()


def test_the_purge_job_deletes_keys_past_their_retention(keys_at: tuple[Engine, ManualClock]) -> None:
    engine, clock = keys_at
    schedule = PlanningSchedule(engine, clock, 900)
    assert schedule.purge_once() == 1
    assert stored_keys(engine) == [("token:1", "recent")]
    assert schedule.purge_once() == 0
    clock.advance(timedelta(hours=1, minutes=1))
    assert schedule.purge_once() == 1
    assert stored_keys(engine) == []


def test_the_schedule_runs_the_purge(
    keys_at: tuple[Engine, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock = keys_at
    monkeypatch.setattr(scheduler, "PURGE_INTERVAL_S", 0.05)
    schedule = PlanningSchedule(engine, clock, 3600)  # no planning run comes in this test
    schedule.start()
    try:
        deadline = time.monotonic() + 10
        while len(stored_keys(engine)) == 2:
            assert time.monotonic() < deadline, "the purge job did not run"
            time.sleep(0.02)
        assert stored_keys(engine) == [("token:1", "recent")]
    finally:
        schedule.stop()
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(IDEMPOTENCY_KEYS)).scalar_one() == 1
