"""The swarm: many devices on one event loop, each logged in to a real Mosquitto as itself.

The broker knows every device's own secret (password and ACL files as ``bench/load_swarm.py``
writes them, from ``cloud.identity.devices``) and nobody anonymous.
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared import topics
from shared.mqtt import MqttSettings
from simulator.load.broker import CLOUD_USER, MAX_QUEUED, Credential, make_credentials, write_broker_files
from simulator.load.swarm import FdLimitError, Swarm, raise_fd_limit
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto, require_mosquitto

DEVICES = 200
# Events/s for the whole swarm: each device publishes every DEVICES / RATE = 0.5 s.
RATE = 400.0
# All DEVICES connect within 0.5 s; then 2.5 s with every one of them publishing.
CONNECT_RATE = 400.0
DURATION_S = 3.0
# The test fails rather than waits longer for the PUBACKs and the cloud's acks.
DRAIN_TIMEOUT_S = 15.0


@dataclass
class Secured:
    """A Mosquitto that knows the swarm's devices, one more device and the cloud user."""

    broker: Mosquitto
    credentials: list[Credential]
    other: Credential  # known to the broker; the swarm will try it with a wrong secret
    cloud_password: str


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    credentials = make_credentials("swarm", DEVICES + 1)
    cloud_password = secrets.token_urlsafe(24)
    password_file, acl_file = write_broker_files(tmp_path, credentials, {CLOUD_USER: cloud_password})
    broker = Mosquitto(
        require_mosquitto(),
        tmp_path,
        anonymous=False,
        password_file=password_file,
        acl_file=acl_file,
        max_queued_messages=MAX_QUEUED,
    )
    broker.start()
    try:
        yield Secured(broker, credentials[:DEVICES], credentials[DEVICES], cloud_password)
    finally:
        broker.stop()


def make_swarm(secured: Secured, credentials: list[Credential], *, await_acks: bool = False) -> Swarm:
    return Swarm(
        credentials,
        port=secured.broker.port,
        rate=RATE,
        connect_rate=CONNECT_RATE,
        duration_s=DURATION_S,
        await_acks=await_acks,
        drain_timeout_s=DRAIN_TIMEOUT_S,
    )


@pytest.mark.mosquitto
def test_every_device_connects_as_itself_and_a_wrong_secret_is_refused(secured: Secured) -> None:
    impostor = Credential(secured.other.device_id, secrets.token_urlsafe(32))
    swarm = make_swarm(secured, [*secured.credentials, impostor])

    stats = asyncio.run(swarm.run())

    assert stats.connected_max == stats.connected_at_end == DEVICES
    assert stats.errors == {"refused": 1}
    assert stats.connected == 0, "every connection is closed at the end"
    assert stats.published > 0
    assert stats.pubacked == stats.published, "the broker acknowledged every publish"
    assert all(d.published > 0 for d in swarm.devices if d.device_id != impostor.device_id)
    steady = stats.steady_events_per_s
    assert steady is not None
    assert 0.75 * RATE <= steady <= 1.05 * RATE, f"{steady:.0f} events/s"


@pytest.mark.mosquitto
def test_with_a_cloud_every_event_is_stored_once_and_acknowledged(
    secured: Secured, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    password = SecretStr(secured.cloud_password)
    mqtt = MqttSettings(host="127.0.0.1", port=secured.broker.port, username=CLOUD_USER, password=password)
    cloud = start_cloud(mqtt, f"sqlite:///{tmp_path / 'cloud.db'}")
    swarm = make_swarm(secured, secured.credentials, await_acks=True)

    stats = asyncio.run(swarm.run())

    assert stats.errors == {}
    assert stats.connected_max == DEVICES
    assert stats.published > 0
    assert stats.acked == stats.pubacked == stats.published
    assert all(d.acked == d.published > 0 for d in swarm.devices)
    assert cloud.ingestor.stats.stored == stats.published
    assert cloud.ingestor.stats.duplicates == 0
    assert cloud.ingestor.stats.rejected_total == 0


def test_a_hard_limit_too_low_for_the_swarm_is_reported() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on file descriptors here")

    with pytest.raises(FdLimitError, match=f"hard limit is {hard}"):
        raise_fd_limit(hard)


def test_device_ids_are_valid_and_secrets_distinct() -> None:
    credentials = make_credentials("swarm", 3)

    assert [c.device_id for c in credentials] == ["swarm-00000", "swarm-00001", "swarm-00002"]
    assert all(topics.parse(topics.events(c.device_id)).device_id == c.device_id for c in credentials)
    assert len({c.secret for c in credentials}) == 3


@pytest.mark.mosquitto
def test_a_load_scenario_runs_from_the_command_line_and_reports_its_figures(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from frigo.cli import app

    require_mosquitto()
    scenario = tmp_path / "load-small.toml"
    scenario.write_text(
        'description = "A small swarm."\n'
        "[load]\ndevices = 150\nrate = 300\nduration_s = 2\nconnect_rate = 500\ncloud = true\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["sim", "run", str(scenario), "--report-dir", str(tmp_path / "report")])

    assert result.exit_code == 0, result.output
    assert "150 devices connected at most" in result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["connected_max"] == 150
    assert summary["errors"] == {}
    assert summary["published"] > 0
    assert summary["cloud_acked"] == summary["cloud_stored"] == summary["published"]
    assert summary["rss_mb_peak"] > 0
    assert summary["scenario"]["load"]["devices"] == 150


def test_the_built_in_load_scenario_is_10000_devices() -> None:
    from simulator.scenario import load_scenario

    load = load_scenario("load-10k").load
    assert load is not None
    assert load.devices == 10_000
