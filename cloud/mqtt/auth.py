"""Authentication and topic ACLs for the embedded broker (amqtt), the same rules as Mosquitto's.

:class:`BrokerAuth` decides; the two amqtt plugins below only ask it:

- who may connect: a provisioned, unrevoked device with its current secret (argon2, through
  :func:`cloud.identity.devices.verify`), whose client id is its device id; or a configured cloud user with
  its password. Anonymous, unknown, revoked and wrong-password connections are refused, and so is
  a Last Will on a topic the client may not publish to (amqtt sends wills unchecked);
- what each may do, as the ACL file of :func:`cloud.identity.devices.acl_text` says: a device (username =
  device id) publishes only to its own device-to-cloud topics and subscribes to and receives only
  its own commands and desired config; the cloud reads every device's device-to-cloud topics and
  writes every device's cloud-to-device topics (and its events and telemetry, to clear a retained
  message there). A subscription is allowed only if everything it could match is allowed, so
  ``frigo/v1/devices/+/#`` is refused to a device outright.

Binding a device's client id to its username stops one device from taking over another's
connection, persistent session and the messages queued in it (Mosquitto does the same with
``use_username_as_clientid``; amqtt has no such option). A cloud user may use any client id but a
device's. :mod:`cloud.mqtt.broker` closes two holes of amqtt
itself: it checks credentials before a CONNECT can touch an existing session, and it filters
retained messages. Revoking a device takes effect at its next connection; a connected device
stays connected until then (Mosquitto drops it when its files are rewritten and reloaded).

This module imports amqtt, which only the ``cloud`` extra installs: import it only where the
embedded broker runs with authentication.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session as MqttSession
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.tables import Device
from cloud.identity import devices
from shared import topics
from shared.errors import InvalidTopic

log = logging.getLogger(__name__)

# argon2 takes ~64 MiB and tens of milliseconds per check: a few threads keep a reconnecting fleet
# (or a flood of bad logins) from taking all memory, while the broker's event loop stays free.
VERIFY_THREADS = 4
_SHARED_PREFIX = "$share/"


class Role(StrEnum):
    """What kind of client a username belongs to."""

    DEVICE = "device"
    CLOUD = "cloud"


@dataclass(frozen=True)
class BrokerAuth:
    """The embedded broker's users and ACLs: devices from the database, cloud users configured."""

    engine: Engine
    cloud_users: Mapping[str, str] = field(default_factory=dict, repr=False)

    def role_of(self, username: str | None) -> Role | None:
        """Return the role of an authenticated username."""
        if not username:
            return None
        return Role.CLOUD if username in self.cloud_users else Role.DEVICE

    def admits(
        self, username: str | None, password: str | None, client_id: str | None, will_topic: str | None
    ) -> bool:
        """Return whether a connection may be accepted; blocks on the database and argon2."""
        role = self.role_of(username)
        if role is None or username is None or password is None:
            return False
        if will_topic is not None and not self.may_publish(username, will_topic):
            log.info("refused %s: Last Will on %r, which it may not publish to", username, will_topic)
            return False
        if role is Role.CLOUD:
            expected = self.cloud_users[username]
            if not hmac.compare_digest(password.encode(), expected.encode()):
                return False
            with Session(self.engine) as session:
                # A cloud client must not take over a device's session under the device's client id.
                return client_id is None or session.get(Device, client_id) is None
        if client_id != username:
            log.info("refused device %s: its client id %r is not its device id", username, client_id)
            return False
        with Session(self.engine) as session:
            return devices.verify(session, username, password)

    def may_publish(self, username: str | None, topic: str) -> bool:
        """Return whether ``username`` may publish to ``topic``."""
        return any(_within(topic, allowed) for allowed in self._writable(username))

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """Return whether every topic ``topic_filter`` can match is one ``username`` may read."""
        if topic_filter.startswith(_SHARED_PREFIX):
            parts = topic_filter.split("/", 2)
            if len(parts) < 3 or not parts[1]:
                return False
            topic_filter = parts[2]
        return any(_within(topic_filter, allowed) for allowed in self._readable(username))

    def may_receive(self, username: str | None, topic: str) -> bool:
        """Return whether a message on ``topic`` may be delivered to ``username``."""
        return any(_within(topic, allowed) for allowed in self._readable(username))

    def _readable(self, username: str | None) -> list[str]:
        role = self.role_of(username)
        if role is Role.CLOUD:
            return [topics.all_devices(channel) for channel in topics.DEVICE_TO_CLOUD]
        if role is Role.DEVICE and username is not None:
            return _own(username, topics.CLOUD_TO_DEVICE)
        return []

    def _writable(self, username: str | None) -> list[str]:
        role = self.role_of(username)
        if role is Role.CLOUD:
            # The device streams too, as in Mosquitto's ACL: only to clear a retained message a
            # device left there, which every new subscription would otherwise get again.
            channels = (*topics.CLOUD_TO_DEVICE, *devices.CLOUD_CLEARS)
            return [topics.all_devices(channel) for channel in channels]
        if role is Role.DEVICE and username is not None:
            return _own(username, topics.DEVICE_TO_CLOUD)
        return []


def _own(device_id: str, channels: tuple[topics.Channel, ...]) -> list[str]:
    try:
        return [topics.device_topic(device_id, channel) for channel in channels]
    except InvalidTopic:
        return []


def _within(candidate: str, allowed: str) -> bool:
    """Return whether every topic the filter (or topic) ``candidate`` matches also matches ``allowed``."""
    wanted, granted = candidate.split("/"), allowed.split("/")
    for index, level in enumerate(granted):
        if level == "#":
            return True
        if index >= len(wanted) or wanted[index] == "#":
            return False
        if level != "+" and wanted[index] != level:
            return False
    return len(wanted) == len(granted)


class CredentialAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt has no type hints
    """amqtt authentication plugin asking :class:`BrokerAuth`; configure ``{"auth": BrokerAuth}``."""

    @dataclass
    class Config:
        """The plugin's configuration: the :class:`BrokerAuth` to ask."""

        auth: Any = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        if not isinstance(self.config.auth, BrokerAuth):
            raise TypeError("CredentialAuthPlugin needs {'auth': BrokerAuth(...)} as configuration")
        self._auth: BrokerAuth = self.config.auth
        self._pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="broker-auth")

    async def authenticate(self, *, session: MqttSession) -> bool:
        """Return whether the connecting client is admitted."""
        will_topic = session.will_topic if session.will_flag else None
        loop = asyncio.get_running_loop()
        try:
            admitted = await loop.run_in_executor(
                self._pool,
                self._auth.admits,
                session.username,
                session.password,
                session.client_id,
                will_topic,
            )
        except Exception:  # a database outage refuses the connection; the client retries
            log.exception("cannot check the credentials of %r; refusing it", session.username)
            return False
        if not admitted:
            log.info("refused MQTT connection of %r (client id %r)", session.username, session.client_id)
        return bool(admitted)

    async def close(self) -> None:
        """Stop the verification threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class AclTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt has no type hints
    """amqtt topic plugin enforcing :class:`BrokerAuth`'s ACLs; configure ``{"auth": BrokerAuth}``."""

    @dataclass
    class Config:
        """The plugin's configuration: the :class:`BrokerAuth` to ask."""

        auth: Any = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        if not isinstance(self.config.auth, BrokerAuth):
            raise TypeError("AclTopicPlugin needs {'auth': BrokerAuth(...)} as configuration")
        self._auth: BrokerAuth = self.config.auth

    async def topic_filtering(
        self, *, session: MqttSession | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        """Return whether ``session`` may do ``action`` on ``topic``."""
        if session is None or not topic:
            return False
        username = session.username
        if action == Action.PUBLISH:
            allowed = self._auth.may_publish(username, topic)
        elif action == Action.SUBSCRIBE:
            allowed = self._auth.may_subscribe(username, topic)
        elif action == Action.RECEIVE:
            allowed = self._auth.may_receive(username, topic)
        else:
            allowed = False
        if not allowed and action != Action.RECEIVE:
            log.info("denied %s %s on %r", username, action, topic)
        return allowed
