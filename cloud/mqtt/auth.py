"""Authentication and topic ACLs for the embedded broker (amqtt), the same rules as Mosquitto's.

:class:`BrokerAuth` decides; the two amqtt plugins below only ask it:

- who may connect: a provisioned, unrevoked device with its current secret (argon2, through
  :func:`cloud.identity.devices.verify`), whose client id is its device id; or a configured cloud user with
  its password. Anonymous, unknown, revoked and wrong-password connections are refused, and so is
  a Last Will on a topic the client may not publish to (amqtt sends wills unchecked);
- at what cost: at most :data:`MAX_PENDING_CHECKS` credential checks run or wait at once, and a
  CONNECT beyond them is refused at once as "server unavailable", which clients retry (an edge
  agent too: it gives up only on "not authorized"), counted and logged once a minute. A username
  that names no live device costs no argon2 check: its refusal waits as long as one takes, so that
  timing does not tell which devices exist;
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
import math
import time
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
from cloud.errors import BrokerBusy
from cloud.identity import devices
from shared import topics
from shared.errors import InvalidTopic

log = logging.getLogger(__name__)

# argon2 takes ~64 MiB and tens of milliseconds per check: a few threads keep a reconnecting fleet
# (or a flood of bad logins) from taking all memory, while the broker's event loop stays free.
VERIFY_THREADS = 4
# At most this many credential checks run or wait for a thread at once. A check takes 50-200 ms of a
# core (measured 0.2 s on a shared 2-core machine), so the last of 16 waits about a second: well
# within a client's connect timeout. More would not admit anyone sooner, only let a flood of bad
# logins queue work that outlives the clients that sent it (the queue was unbounded).
MAX_PENDING_CHECKS = 16
# CONNECTs refused because the checks were full are logged at most once per this many seconds,
# with their count since the last such line.
BUSY_LOG_INTERVAL_S = 60.0
_SHARED_PREFIX = "$share/"


class Role(StrEnum):
    """What kind of client a username belongs to."""

    DEVICE = "device"
    CLOUD = "cloud"


class Verdict(StrEnum):
    """What :meth:`BrokerAuth.check` decided about a CONNECT."""

    ADMITTED = "admitted"
    REFUSED = "refused"
    # Refused without checking the secret: no such device, a revoked one, or one without a secret.
    NO_SUCH_DEVICE = "no such device"


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

    def check(
        self, username: str | None, password: str | None, client_id: str | None, will_topic: str | None
    ) -> Verdict:
        """Decide whether a connection may be accepted; blocks on the database and argon2.

        A username naming no live device is refused without an argon2 check
        (:attr:`Verdict.NO_SUCH_DEVICE`): the caller makes the refusal take as long as a check would.
        """
        role = self.role_of(username)
        if role is None or username is None or password is None:
            return Verdict.REFUSED
        if will_topic is not None and not self.may_publish(username, will_topic):
            log.info("refused %s: Last Will on %r, which it may not publish to", username, will_topic)
            return Verdict.REFUSED
        if role is Role.CLOUD:
            expected = self.cloud_users[username]
            if not hmac.compare_digest(password.encode(), expected.encode()):
                return Verdict.REFUSED
            with Session(self.engine) as session:
                # A cloud client must not take over a device's session under the device's client id.
                taken = client_id is not None and session.get(Device, client_id) is not None
            return Verdict.REFUSED if taken else Verdict.ADMITTED
        if client_id != username:
            log.info("refused device %s: its client id %r is not its device id", username, client_id)
            return Verdict.REFUSED
        with Session(self.engine) as session:
            device = session.get(Device, username)
            if device is None or device.revoked_at is not None or device.secret_hash is None:
                return Verdict.NO_SUCH_DEVICE
            return Verdict.ADMITTED if devices.verify(session, username, password) else Verdict.REFUSED

    def secret_check_s(self) -> float:
        """Return how long checking a device's secret takes here, in seconds (one argon2 check)."""
        started = time.perf_counter()
        with Session(self.engine) as session:
            # "" is no device's id: verify spends its check on a made-up hash, as it does for any
            # unknown device when asked directly.
            devices.verify(session, "", "")
        return time.perf_counter() - started

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
        # Counted on the broker's event loop only: no lock.
        self._pending = 0
        self.refused_busy = 0  # CONNECTs refused because MAX_PENDING_CHECKS were pending, since start
        self._busy_unlogged = 0
        self._busy_logged_at = -math.inf
        # Measured once, in the background: what a secret check costs on this machine.
        self._secret_check = self._pool.submit(self._auth.secret_check_s)

    async def authenticate(self, *, session: MqttSession) -> bool:
        """Return whether the connecting client is admitted; raise BrokerBusy (the broker answers
        "server unavailable") when MAX_PENDING_CHECKS are already pending."""
        if not session.username or session.password is None:
            return False  # anonymous: nothing to check
        if self._pending >= MAX_PENDING_CHECKS:
            self._note_busy()
            raise BrokerBusy(MAX_PENDING_CHECKS)
        will_topic = session.will_topic if session.will_flag else None
        loop = asyncio.get_running_loop()
        self._pending += 1
        try:
            verdict, took = await loop.run_in_executor(
                self._pool,
                self._timed_check,
                session.username,
                session.password,
                session.client_id,
                will_topic,
            )
        except Exception:  # a database outage refuses the connection; the client retries
            log.exception("cannot check the credentials of %r; refusing it", session.username)
            return False
        finally:
            self._pending -= 1
        if verdict is Verdict.NO_SUCH_DEVICE:
            # As late as a real device's wrong secret would be refused, at the cost of a timer.
            await asyncio.sleep(max(0.0, await self._secret_check_s() - took))
        if verdict is not Verdict.ADMITTED:
            log.info("refused MQTT connection of %r (client id %r)", session.username, session.client_id)
        return verdict is Verdict.ADMITTED

    def _timed_check(
        self, username: str, password: str, client_id: str | None, will_topic: str | None
    ) -> tuple[Verdict, float]:
        started = time.perf_counter()
        verdict = self._auth.check(username, password, client_id, will_topic)
        return verdict, time.perf_counter() - started

    async def _secret_check_s(self) -> float:
        try:
            return await asyncio.wrap_future(self._secret_check)
        except Exception:  # the database was out when it was measured: measure again next time
            log.warning("cannot measure a secret check's time; refusing an unknown device at once")
            self._secret_check = self._pool.submit(self._auth.secret_check_s)
            return 0.0

    def _note_busy(self) -> None:
        self.refused_busy += 1
        self._busy_unlogged += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= BUSY_LOG_INTERVAL_S:
            log.warning(
                "refused %d MQTT connection(s) as server unavailable: %d credential checks were already "
                "pending (a flood of logins, or a fleet reconnecting at once); the clients retry",
                self._busy_unlogged,
                MAX_PENDING_CHECKS,
            )
            self._busy_unlogged = 0
            self._busy_logged_at = now

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
