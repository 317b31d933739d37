"""The fridge → broker → cloud → fridge loop, through real brokers: nothing lost, nothing doubled."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cloud.identity.devices import household_id_for
from cloud.service import CloudService
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.mqtt import MqttSettings
from simulator.household import VirtualHousehold
from tests.conftest import CloudFactory
from tests.support.auth import bearer
from tests.support.services import Mosquitto

SCANS = 1000
AGENTS = 3


def run_scans(mqtt: MqttSettings, tmp_path: Path, cloud: CloudService) -> None:
    """Record SCANS scans across AGENTS real agents and check the cloud stored exactly those."""
    agents = [
        Agent(EdgeSettings(device_id=f"fridge-{i}", data_dir=tmp_path / f"fridge-{i}", mqtt=mqtt))
        for i in range(AGENTS)
    ]
    households = [VirtualHousehold(seed=i) for i in range(AGENTS)]
    for agent in agents:
        agent.start()
    try:
        for n in range(SCANS):
            agent = agents[n % AGENTS]
            assert agent.scan(households[n % AGENTS].next_line(agent.quantity)) is not None
        for agent in agents:
            assert agent.wait_drained(timeout=60), f"{agent.device_id}: {agent.outbox_depth()} unacked"
            assert agent.outbox_depth() == 0
        with httpx.Client(base_url=cloud.url, timeout=10, headers=bearer(cloud.engine)) as client:
            total = 0
            for agent in agents:
                home = household_id_for(agent.device_id)
                inventory = client.get(f"/households/{home}/inventory").json()
                assert {i["code"]: i["quantity"] for i in inventory["items"]} == agent.inventory()
                seqs: list[int] = []
                after = 0
                while page := client.get(
                    f"/households/{home}/events", params={"after": after, "limit": 1000}
                ).json():
                    seqs += [e["seq"] for e in page]
                    after = page[-1]["id"]
                expected = agent.recorder.outbox.last_seq()
                assert sorted(seqs) == list(range(1, expected + 1))
                total += len(seqs)
            assert total == SCANS
            stats = client.get("/stats").json()
        assert stats["stored"] == SCANS
        assert stats["rejected"] == {}
    finally:
        for agent in agents:
            agent.stop()


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_thousand_scans_through_mosquitto(
    mosquitto: Mosquitto, database_url: str, start_cloud: CloudFactory, tmp_path: Path, protocol: str
) -> None:
    mqtt = mosquitto.mqtt(protocol)
    cloud = start_cloud(mqtt, database_url)
    run_scans(mqtt, tmp_path, cloud)


def test_thousand_scans_through_embedded_broker(
    amqtt_broker: MqttSettings, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    cloud = start_cloud(amqtt_broker, f"sqlite:///{tmp_path / 'cloud.db'}")
    run_scans(amqtt_broker, tmp_path, cloud)
