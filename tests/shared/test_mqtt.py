"""The reconnection back-off shared by every MQTT client, the broker settings, and releasing a client."""

from __future__ import annotations

import gc
import random
import warnings

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from shared.mqtt import Backoff, MqttSettings, release


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


class _Holder:
    """Holds a client whose callback is bound to it: a reference cycle, as in every MQTT wrapper."""

    def __init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cycle", protocol=mqtt.MQTTv5)
        self.client.on_message = self.on_message

    def on_message(self, *_args: object) -> None:
        pass


def test_a_released_client_leaves_no_socket_for_the_garbage_collector() -> None:
    # The suite's rare "unclosed socket" failures: paho's wake-up socket pair (two loopback TCP
    # sockets) is closed only in Client.__del__. With the client in a cycle and in an older
    # generation than its sockets, a full collection finalises the sockets first, each with a
    # ResourceWarning (reproduced without release(): two per client).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            holder = _Holder()
            gc.collect(0)  # the client moves to an older generation than the sockets made next
            holder.client.loop_start()
            holder.client.loop_stop()
            release(holder.client)
            del holder
            gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
