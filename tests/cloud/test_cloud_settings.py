"""The cloud's secure defaults: no auto-enrolment, and each worker's MQTT username as its client id."""

from __future__ import annotations

import os

import pytest

from cloud.settings import CloudSettings
from shared.mqtt import MqttSettings


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's FRIGO_CLOUD_* variables out of the settings under test."""
    for name in [name for name in os.environ if name.startswith("FRIGO_CLOUD_")]:
        monkeypatch.delenv(name)


def test_unknown_devices_are_not_enrolled_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CloudSettings().auto_enroll is False
    monkeypatch.setenv("FRIGO_CLOUD_AUTO_ENROLL", "true")
    assert CloudSettings().auto_enroll is True


def test_the_client_id_is_the_mqtt_username_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CloudSettings().client_id == "frigo-cloud", "no username: the old default"
    assert CloudSettings(mqtt=MqttSettings(username="cloud-1")).client_id == "cloud-1"
    given = CloudSettings(mqtt=MqttSettings(username="cloud-1"), client_id="worker-a")
    assert given.client_id == "worker-a"

    monkeypatch.setenv("FRIGO_CLOUD_MQTT__USERNAME", "cloud-2")
    assert CloudSettings().client_id == "cloud-2"
    # `frigo cloud` rebuilds its settings from a dump with its options applied: the id survives.
    assert CloudSettings.model_validate(CloudSettings().model_dump()).client_id == "cloud-2"
    monkeypatch.setenv("FRIGO_CLOUD_CLIENT_ID", "worker-b")
    assert CloudSettings().client_id == "worker-b"
