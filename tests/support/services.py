"""Start real brokers and databases for tests, each on its own port or database."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulator.mosquitto import Mosquitto, free_port, mosquitto_binary, wait_for_port

__all__ = ["Mosquitto", "free_port", "mosquitto_binary", "wait_for_port"]

REQUIRE_SERVICES = os.environ.get("FRIGO_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get(
    "FRIGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when FRIGO_REQUIRE_SERVICES=1 says services must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (FRIGO_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


def require_mosquitto() -> str:
    """Return the mosquitto binary, or skip (fail under FRIGO_REQUIRE_SERVICES=1) without one."""
    binary = mosquitto_binary()
    if binary is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
        raise AssertionError("unreachable")
    return binary


def require_tool(name: str) -> str:
    """Return the path of a command-line tool such as mosquitto_passwd, or skip/fail without it."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed")
        raise AssertionError("unreachable")
    return found


CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def require_chromium() -> str:
    """Return Debian's Chromium for Playwright, or skip (fail under FRIGO_REQUIRE_SERVICES=1) without
    it or without the playwright package (the dev extra)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
        raise AssertionError("unreachable") from None
    for path in (shutil.which("chromium"), *CHROMIUM_PATHS):
        if path is not None and os.access(path, os.X_OK):
            return path
    unavailable("chromium is not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


@contextmanager
def running_mosquitto(directory: Path) -> Iterator[Mosquitto]:
    """Run a Mosquitto of the test's own, or skip (fail under FRIGO_REQUIRE_SERVICES=1) without one."""
    broker = Mosquitto(require_mosquitto(), directory)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a PostgreSQL database of the test's own; yield its URL; drop it afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"frigo_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
        raise AssertionError("unreachable") from exc
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
