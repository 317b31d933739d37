"""Fixtures shared by every test package: real brokers, databases and cloud workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.mqtt.broker import EmbeddedBroker
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared.mqtt import MqttSettings
from tests.support.services import Mosquitto, free_port, postgres_database, running_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto process of this test's own on a free port."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    with running_mosquitto(directory) as broker:
        yield broker


@pytest.fixture
def amqtt_broker() -> Iterator[MqttSettings]:
    """The embedded amqtt broker on a free port; yields client settings (MQTT 3.1.1)."""
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    try:
        yield MqttSettings(host="127.0.0.1", port=port, protocol="3.1.1")
    finally:
        broker.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, and then a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    with postgres_database() as url:
        yield url


CloudFactory = Callable[..., CloudService]


@pytest.fixture
def start_cloud() -> Iterator[CloudFactory]:
    """Start cloud workers on free ports; every one is stopped at the end of the test.

    Ask for it after ``database_url``: fixtures end in the reverse order, so the workers stop before
    their database is dropped."""
    started: list[CloudService] = []

    def start(mqtt: MqttSettings, database_url: str, **settings: object) -> CloudService:
        service = CloudService(
            CloudSettings(
                database_url=database_url,
                mqtt=mqtt,
                http_port=0,
                client_id=f"frigo-cloud-{len(started)}",
                # The tests' fridges are not provisioned: they enrol with their first event.
                **{"auto_enroll": True, **settings},  # type: ignore[arg-type]
            )
        )
        service.start()
        started.append(service)
        if not service.subscriber.wait_connected(10):
            raise TimeoutError(f"cloud did not connect to {mqtt.host}:{mqtt.port}")
        return service

    yield start
    for service in reversed(started):
        service.stop()
