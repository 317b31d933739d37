"""Topic builders, parsing and ACL patterns of shared.topics."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared import topics
from shared.errors import InvalidTopic
from shared.topics import Channel, DeviceTopic


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (topics.events, "frigo/v1/devices/fridge-1/events"),
        (topics.telemetry, "frigo/v1/devices/fridge-1/telemetry"),
        (topics.availability, "frigo/v1/devices/fridge-1/availability"),
        (topics.commands, "frigo/v1/devices/fridge-1/commands"),
        (topics.desired_config, "frigo/v1/devices/fridge-1/config/desired"),
    ],
)
def test_builders(builder: Callable[[str], str], expected: str) -> None:
    assert builder("fridge-1") == expected


def test_device_topic_matches_channel_value() -> None:
    assert topics.device_topic("A_b-9", Channel.DESIRED_CONFIG) == "frigo/v1/devices/A_b-9/config/desired"


@pytest.mark.parametrize("channel", list(Channel))
def test_parse_round_trip_every_channel(channel: Channel) -> None:
    topic = topics.device_topic("fridge_42", channel)
    assert topics.parse(topic) == DeviceTopic(device_id="fridge_42", channel=channel)


def test_every_channel_is_covered_by_a_direction() -> None:
    assert set(topics.DEVICE_TO_CLOUD) | set(topics.CLOUD_TO_DEVICE) == set(Channel)
    assert not set(topics.DEVICE_TO_CLOUD) & set(topics.CLOUD_TO_DEVICE)


@pytest.mark.parametrize("device_id", ["a", "0", "Z" * 64, "a-b_c", "9_-"])
def test_valid_device_ids(device_id: str) -> None:
    assert topics.validate_device_id(device_id) == device_id


@pytest.mark.parametrize(
    "device_id",
    ["", "a/b", "/", "a+", "+", "#", "a#", "x" * 65, "-abc", "_abc", "a b", "é", "a.b"],
)
def test_invalid_device_ids(device_id: str) -> None:
    with pytest.raises(InvalidTopic, match="invalid device id"):
        topics.validate_device_id(device_id)
    with pytest.raises(InvalidTopic):
        topics.events(device_id)


def test_device_id_with_trailing_newline_is_invalid() -> None:
    with pytest.raises(InvalidTopic):
        topics.validate_device_id("abc\n")


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "frigo/v1/devices",
        "frigo/v1/devices/",
        "frigo/v2/devices/fridge-1/events",
        "other/v1/devices/fridge-1/events",
        "/frigo/v1/devices/fridge-1/events",
        "frigo/v1/devices/fridge-1",
        "frigo/v1/devices/fridge-1/",
        "frigo/v1/devices/fridge-1/unknown",
        "frigo/v1/devices/fridge-1/events/extra",
        "frigo/v1/devices/fridge-1/config",
        "frigo/v1/devices/fridge-1/EVENTS",
        "frigo/v1/devices//events",
        "frigo/v1/devices/+/events",
        "frigo/v1/devices/#",
        "frigo/v1/devices/-bad/events",
    ],
)
def test_parse_rejects_foreign_and_unknown_topics(topic: str) -> None:
    with pytest.raises(InvalidTopic):
        topics.parse(topic)


def test_all_devices_filter() -> None:
    assert topics.all_devices(Channel.EVENTS) == "frigo/v1/devices/+/events"
    assert topics.all_devices(Channel.DESIRED_CONFIG) == "frigo/v1/devices/+/config/desired"


def test_shared_subscription() -> None:
    assert (
        topics.shared_subscription("ingest", topics.all_devices(Channel.EVENTS))
        == "$share/ingest/frigo/v1/devices/+/events"
    )


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#"])
def test_shared_subscription_rejects_bad_group(group: str) -> None:
    with pytest.raises(InvalidTopic, match="shared-subscription group"):
        topics.shared_subscription(group, "frigo/v1/devices/+/events")


def test_acl_patterns() -> None:
    assert topics.acl_patterns() == [
        "pattern write frigo/v1/devices/%u/events",
        "pattern write frigo/v1/devices/%u/telemetry",
        "pattern write frigo/v1/devices/%u/availability",
        "pattern read frigo/v1/devices/%u/commands",
        "pattern read frigo/v1/devices/%u/config/desired",
    ]


def test_acl_patterns_follow_directions() -> None:
    lines = topics.acl_patterns()
    for channel in topics.DEVICE_TO_CLOUD:
        assert f"pattern write {topics.PREFIX}/%u/{channel.value}" in lines
    for channel in topics.CLOUD_TO_DEVICE:
        assert f"pattern read {topics.PREFIX}/%u/{channel.value}" in lines
    assert all("%u" in line for line in lines)
    assert len(lines) == len(Channel)
