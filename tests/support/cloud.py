"""A cloud worker for API tests: its own database, its HTTP API on a free port, no broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.clock import Clock
from shared.mqtt import MqttSettings
from tests.support.services import free_port, postgres_database

# For a module-scoped fixture that runs its tests on SQLite, then on PostgreSQL.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """Yield the URL of a new database: a SQLite file in ``folder``, or a PostgreSQL one of its own."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'cloud.db'}"
        return
    with postgres_database() as url:
        yield url


@contextmanager
def cloud_worker(
    url: str,
    clock: Clock | None,
    name: str,
    *,
    prepare: Callable[[CloudService], None] | None = None,
    **settings: Any,
) -> Iterator[CloudService]:
    """Run a worker serving HTTP on a free port; its MQTT port is free too (nothing listens, no
    planning). ``prepare`` runs before it starts (to ingest events, say)."""
    service = CloudService(
        CloudSettings(
            database_url=url,
            mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
            http_port=0,
            client_id=f"{name}-{uuid.uuid4().hex[:8]}",
            planning=False,
            **{"auto_enroll": True, **settings},  # the tests' fridges are not provisioned
        ),
        clock,
    )
    if prepare is not None:
        prepare(service)
    service.start()
    try:
        yield service
    finally:
        service.stop()
