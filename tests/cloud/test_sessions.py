"""Web sign-ins as server-side sessions (cloud/identity/sessions.py), on SQLite and PostgreSQL: only
the id's hash is stored; a session ends on sign-out, when idle, when too old, and with its
credential (revoked or expired); the household's erasure takes its sessions with it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from cloud.commerce.privacy import erase
from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import WEB_SESSIONS, Household
from cloud.identity import sessions
from cloud.identity.retailers import create_retailer, revoke_key
from cloud.identity.sessions import Holder, end_session, holder_of, session_of, start_session
from cloud.identity.tokens import issue_token, list_tokens, revoke_token

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOUSEHOLD = "hh-kitchen"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_schema(engine)
    with Session(engine) as session:
        session.add(Household(id=HOUSEHOLD, name="Kitchen", created_at=NOW))
        session.add(Household(id="hh-other", name="Other", created_at=NOW))
        session.commit()
    try:
        yield engine
    finally:
        engine.dispose()


def issued(engine: Engine, *, lifetime: timedelta | None = None) -> str:
    with Session(engine) as session:
        token = issue_token(session, "household", HOUSEHOLD, NOW, lifetime=lifetime)
        session.commit()
    return token


def signed_in(engine: Engine, secret: str, at: datetime = NOW, household: str | None = None) -> str:
    with engine.begin() as connection:
        holder = holder_of(connection, secret, at)
        assert holder is not None
        return start_session(connection, holder, household, at)


def token_id(engine: Engine) -> int:
    with engine.connect() as connection:
        (token,) = list_tokens(connection, HOUSEHOLD)
    return token.id


def holder(engine: Engine, session_id: str, at: datetime, *, touch: bool = True) -> Holder | None:
    with engine.begin() as connection:
        return session_of(connection, session_id, at, touch=touch)


def test_a_session_stands_for_its_token_and_only_its_hash_is_stored(engine: Engine) -> None:
    token = issued(engine)
    session_id = signed_in(engine, token)
    found = holder(engine, session_id, NOW)
    assert found is not None
    assert found.caller is not None
    assert (found.caller.role, found.caller.household_id, found.household_id) == (
        "household",
        HOUSEHOLD,
        HOUSEHOLD,
    )
    assert found.credential == f"token:{token_id(engine)}"
    with engine.connect() as connection:
        (row,) = connection.execute(select(WEB_SESSIONS)).mappings().all()
    assert session_id not in {str(value) for value in row.values()}
    assert token not in {str(value) for value in row.values()}
    assert row["session_hash"] == sessions.session_hash(session_id)
    assert holder(engine, "not-a-session", NOW) is None
    assert holder(engine, "", NOW) is None


def test_signing_out_ends_the_session(engine: Engine) -> None:
    session_id = signed_in(engine, issued(engine))
    with engine.begin() as connection:
        assert end_session(connection, session_id, NOW) is True
        assert end_session(connection, session_id, NOW) is False  # once only
    assert holder(engine, session_id, NOW) is None


def test_an_idle_session_ends_and_a_used_one_lives_on_until_its_absolute_end(engine: Engine) -> None:
    token = issued(engine)
    idle = signed_in(engine, token)
    assert holder(engine, idle, NOW + sessions.IDLE_TIMEOUT - timedelta(seconds=1), touch=False) is not None
    assert holder(engine, idle, NOW + sessions.IDLE_TIMEOUT) is None

    used = signed_in(engine, token)
    at = NOW
    # A request every 20 minutes keeps it alive, past many idle timeouts ...
    while at + timedelta(minutes=20) < NOW + sessions.ABSOLUTE_TIMEOUT:
        at += timedelta(minutes=20)
        assert holder(engine, used, at) is not None, at
    # ... but not past its absolute end.
    assert holder(engine, used, NOW + sessions.ABSOLUTE_TIMEOUT) is None


def test_a_streams_look_does_not_keep_a_session_alive(engine: Engine) -> None:
    session_id = signed_in(engine, issued(engine))
    assert holder(engine, session_id, NOW + timedelta(minutes=20), touch=False) is not None
    assert holder(engine, session_id, NOW + sessions.IDLE_TIMEOUT) is None


def test_revoking_or_expiring_the_credential_ends_its_sessions(engine: Engine) -> None:
    token = issued(engine)
    first, second = signed_in(engine, token), signed_in(engine, token)
    with engine.begin() as connection:
        revoked = revoke_token(connection, token_id(engine), NOW)
    assert revoked is not None
    assert revoked.state(NOW) == "revoked"
    assert holder(engine, first, NOW) is None
    assert holder(engine, second, NOW) is None

    short = issued(engine, lifetime=timedelta(hours=1))
    session_id = signed_in(engine, short)
    assert holder(engine, session_id, NOW + timedelta(minutes=29)) is not None
    assert holder(engine, session_id, NOW + timedelta(minutes=58)) is not None
    assert holder(engine, session_id, NOW + timedelta(hours=1)) is None  # the token expired

    with Session(engine) as session:
        _, key = create_retailer(session, "Fresh Foods", NOW)
        session.commit()
    shop = signed_in(engine, key)
    found = holder(engine, shop, NOW)
    assert found is not None
    assert (found.retailer_id, found.caller) == ("fresh-foods", None)
    assert found.key_id is not None
    with engine.begin() as connection:
        assert revoke_key(connection, "fresh-foods", found.key_id, NOW) is not None
    assert holder(engine, shop, NOW) is None


def test_an_operator_session_remembers_the_household_it_signed_in_to(engine: Engine) -> None:
    with Session(engine) as session:
        token = issue_token(session, "admin", None, NOW)
        session.commit()
    found = holder(engine, signed_in(engine, token, household="hh-other"), NOW)
    assert found is not None
    assert found.caller is not None
    assert (found.caller.role, found.household_id) == ("admin", "hh-other")


def test_sessions_that_ended_are_deleted_at_the_next_sign_in(engine: Engine) -> None:
    token = issued(engine)
    ended = signed_in(engine, token)
    with engine.begin() as connection:
        end_session(connection, ended, NOW)
    signed_in(engine, token, at=NOW)  # idle ones go too
    signed_in(engine, token, at=NOW + sessions.IDLE_TIMEOUT + timedelta(minutes=1))
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(WEB_SESSIONS)).scalar_one() == 1


def test_erasing_the_household_takes_its_sessions(engine: Engine) -> None:
    signed_in(engine, issued(engine))
    with Session(engine) as session:
        operator = issue_token(session, "admin", None, NOW)
        session.commit()
    signed_in(engine, operator, household=HOUSEHOLD)
    with engine.begin() as connection:
        erase(connection, HOUSEHOLD, NOW)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(WEB_SESSIONS)).scalar_one() == 0
