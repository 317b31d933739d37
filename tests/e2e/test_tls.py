"""TLS with a CA file and per-device credentials, through a real Mosquitto that requires both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from cloud.mqtt.pki import make_ca, make_server_cert
from edge.agent import Agent
from edge.settings import EdgeSettings
from shared.mqtt import MqttSettings
from tests.conftest import CloudFactory
from tests.support.services import Mosquitto, mosquitto_binary, unavailable


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """Make a CA and a server certificate for 127.0.0.1 with cloud.mqtt.pki; return (ca, cert, key)."""
    ca = make_ca(directory, "frigo-test-ca", days=2)
    server = make_server_cert(directory, directory, ["127.0.0.1", "localhost"], days=2)
    return ca.cert, server.cert, server.key


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Mosquitto:
    binary = mosquitto_binary()
    if binary is None:
        unavailable("mosquitto is not installed (apt-get install mosquitto)")
        raise AssertionError("unreachable")
    ca, cert, key = make_pki(tmp_path)
    passwords = tmp_path / "passwords"
    for user, secret in (("tls-fridge", "fridge-secret"), ("frigo-cloud", "cloud-secret")):
        flags = ["-b", "-c"] if not passwords.exists() else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwords), user, secret], check=True, timeout=30)
    broker = Mosquitto(
        binary,
        tmp_path,
        listener_options=[f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"],
        anonymous=False,
        password_file=passwords,
    )
    broker.start()
    return broker


def settings_for(broker: Mosquitto, ca: Path, user: str, secret: str) -> MqttSettings:
    return MqttSettings(
        host="127.0.0.1", port=broker.port, tls_ca_file=ca, username=user, password=SecretStr(secret)
    )


@pytest.mark.mosquitto
def test_agent_delivers_over_tls_with_its_own_credentials(
    tls_mosquitto: Mosquitto, start_cloud: CloudFactory, tmp_path: Path
) -> None:
    try:
        ca = tmp_path / "ca.pem"
        cloud = start_cloud(
            settings_for(tls_mosquitto, ca, "frigo-cloud", "cloud-secret"), f"sqlite:///{tmp_path / 'c.db'}"
        )
        agent = Agent(
            EdgeSettings(
                device_id="tls-fridge",
                data_dir=tmp_path / "agent",
                mqtt=settings_for(tls_mosquitto, ca, "tls-fridge", "fridge-secret"),
            )
        )
        agent.start(poll=False)
        try:
            agent.scan("+4006381333931")
            assert agent.wait_drained(timeout=15)
        finally:
            agent.stop()
        assert cloud.ingestor.stats.stored == 1
    finally:
        tls_mosquitto.stop()


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("user", "secret", "use_ca"),
    [
        ("tls-fridge", "wrong", True),
        ("nobody", "fridge-secret", True),
        ("tls-fridge", "fridge-secret", False),
    ],
    ids=["wrong-password", "unknown-user", "no-tls"],
)
def test_agent_with_bad_credentials_or_without_tls_is_refused(
    tls_mosquitto: Mosquitto, tmp_path: Path, user: str, secret: str, use_ca: bool
) -> None:
    try:
        mqtt = settings_for(tls_mosquitto, tmp_path / "ca.pem", user, secret)
        if not use_ca:
            mqtt = mqtt.model_copy(update={"tls_ca_file": None})
        agent = Agent(EdgeSettings(device_id="tls-fridge", data_dir=tmp_path / "agent", mqtt=mqtt))
        agent.start(poll=False)
        try:
            agent.scan("+4006381333931")
            assert not agent.uplink.wait_connected(3)
            assert agent.outbox_depth() == 1, "the event must stay in the outbox"
        finally:
            agent.stop()
    finally:
        tls_mosquitto.stop()
