"""The reconnection back-off shared by every MQTT client, and the broker settings."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from shared.mqtt import Backoff, MqttSettings


def test_backoff_doubles_from_one_second_to_a_sixty_second_cap_with_jitter() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    steps = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step
    assert len(set(delays)) == len(delays), "no jitter: clients would reconnect in lockstep"


def test_backoff_starts_again_after_a_successful_connection() -> None:
    backoff = Backoff(rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


@pytest.mark.parametrize("seed", range(20))
def test_two_clients_rarely_pick_the_same_delay(seed: int) -> None:
    first, second = Backoff(rng=random.Random(seed)), Backoff(rng=random.Random(seed + 1000))
    assert first.next_delay() != second.next_delay()


def test_a_misspelt_mqtt_setting_is_rejected_not_ignored() -> None:
    # Ignored, "hots" would leave the client on the default 127.0.0.1 without a word.
    with pytest.raises(ValidationError, match="hots\n  Extra inputs are not permitted"):
        MqttSettings.model_validate({"hots": "mqtt.example.org"})
    assert MqttSettings.model_validate({"host": "mqtt.example.org"}).host == "mqtt.example.org"
