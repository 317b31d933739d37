"""Build and parse every MQTT topic Frigo uses; no topic literal appears anywhere else.

All topics live under ``frigo/v1/devices/{device_id}/``:

- device → cloud: ``events`` (QoS 1, durable), ``telemetry`` (QoS 0), ``availability`` (retained;
  the Last Will sets it to offline);
- cloud → device: ``commands`` (acknowledgements, offers, order updates) and ``config/desired``
  (retained, so a device gets the latest desired configuration as soon as it subscribes).

The MQTT username of a device is its device id, so Mosquitto ACL ``pattern`` lines with ``%u``
confine each device to its own topics (see :func:`acl_patterns`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import InvalidTopic

PREFIX = "frigo/v1/devices"

# Letters, digits, '-' and '_': never an MQTT wildcard or level separator, and safe in file names.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class Channel(StrEnum):
    """The last levels of a device topic, naming what flows on it."""

    EVENTS = "events"
    TELEMETRY = "telemetry"
    AVAILABILITY = "availability"
    COMMANDS = "commands"
    DESIRED_CONFIG = "config/desired"


DEVICE_TO_CLOUD = (Channel.EVENTS, Channel.TELEMETRY, Channel.AVAILABILITY)
CLOUD_TO_DEVICE = (Channel.COMMANDS, Channel.DESIRED_CONFIG)


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    device_id: str
    channel: Channel


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it can name a device, else raise :class:`InvalidTopic`."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidTopic(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return device_id


def device_topic(device_id: str, channel: Channel) -> str:
    """Return the topic of ``channel`` for one device."""
    return f"{PREFIX}/{validate_device_id(device_id)}/{channel.value}"


def events(device_id: str) -> str:
    """Return the topic a device publishes its events to."""
    return device_topic(device_id, Channel.EVENTS)


def telemetry(device_id: str) -> str:
    """Return the topic a device publishes its telemetry to."""
    return device_topic(device_id, Channel.TELEMETRY)


def availability(device_id: str) -> str:
    """Return the retained availability topic of a device."""
    return device_topic(device_id, Channel.AVAILABILITY)


def commands(device_id: str) -> str:
    """Return the topic the cloud sends a device its commands on."""
    return device_topic(device_id, Channel.COMMANDS)


def desired_config(device_id: str) -> str:
    """Return the retained topic holding a device's desired configuration."""
    return device_topic(device_id, Channel.DESIRED_CONFIG)


def all_devices(channel: Channel) -> str:
    """Return the filter matching ``channel`` of every device."""
    return f"{PREFIX}/+/{channel.value}"


def shared_subscription(group: str, topic_filter: str) -> str:
    """Return ``topic_filter`` as an MQTT shared subscription of ``group``."""
    if not group or any(c in group for c in "/+#"):
        raise InvalidTopic(f"invalid shared-subscription group {group!r}: no '/', '+' or '#'")
    return f"$share/{group}/{topic_filter}"


# Every message's topic is parsed, and a fleet's topics repeat: remember the recent ones.
@functools.lru_cache(maxsize=65_536)
def parse(topic: str) -> DeviceTopic:
    """Split a device topic into device id and channel, or raise :class:`InvalidTopic`."""
    prefix = PREFIX + "/"
    if not topic.startswith(prefix):
        raise InvalidTopic(f"topic {topic!r} is not under {PREFIX}/")
    device_id, _, rest = topic[len(prefix) :].partition("/")
    try:
        channel = Channel(rest)
    except ValueError:
        raise InvalidTopic(f"topic {topic!r} names no known channel") from None
    return DeviceTopic(validate_device_id(device_id), channel)


def acl_patterns() -> list[str]:
    """Return Mosquitto ACL lines confining each device (username = device id) to its own topics."""
    lines = [f"pattern write {PREFIX}/%u/{channel.value}" for channel in DEVICE_TO_CLOUD]
    lines += [f"pattern read {PREFIX}/%u/{channel.value}" for channel in CLOUD_TO_DEVICE]
    return lines
