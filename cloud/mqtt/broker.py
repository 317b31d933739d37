"""The embedded MQTT broker (amqtt) for the demo and small homes: nothing to install.

amqtt speaks MQTT 3.1.1 only and carries ~1,500 QoS 1 msg/s on a full core; a fleet needs
Mosquitto (see README).

Without ``auth`` the broker is anonymous and has no ACLs: anyone who reaches the port may publish
as any fridge and read everything. That mode is for ``frigo demo`` on 127.0.0.1 only. With a
:class:`cloud.mqtt.auth.BrokerAuth`, devices log in with their provisioned secrets and the same
ACLs as Mosquitto's confine them to their own topics.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import TYPE_CHECKING, Any

from cloud.errors import BrokerStartError

if TYPE_CHECKING:
    from cloud.mqtt.auth import BrokerAuth

log = logging.getLogger(__name__)


# The session attributes a reconnecting client's CONNECT brings to its stored session.
_CONNECT_ATTRIBUTES = (
    "will_flag",
    "will_message",
    "will_topic",
    "will_qos",
    "will_retain",
    "keep_alive",
    "username",
    "password",
)


def _broker_class() -> type[Any]:
    """Return amqtt 0.12.1's broker with two security holes closed (pinned in pyproject.toml).

    1. amqtt checks credentials only after a CONNECT has copied its username, password and Last
       Will into the stored session of the same client id and has taken that session over,
       disconnecting its owner. So a client with no valid credential could knock any device off
       and plant a Last Will that amqtt then sends, unchecked, when the owner's connection drops.
       Here the credentials are checked first; a refused CONNECT touches no session.
    2. amqtt sends a connecting client the retained messages matching *every* client's
       subscriptions, and never asks the topic plugins whether it may receive them: with ACLs a
       device would get another's retained desired config. Here a client gets retained messages
       only for its own subscriptions, and only those the topic plugins let it receive.
    """
    from amqtt.broker import Broker  # imported here: only the cloud extra installs amqtt
    from amqtt.contexts import Action
    from amqtt.errors import AMQTTError, MQTTError, NoDataError
    from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    class CheckedBroker(Broker):  # type: ignore[misc]  # amqtt has no type hints
        async def _initialize_client_session(
            self, reader: Any, writer: Any, remote_address: str, remote_port: int
        ) -> tuple[Any, Any]:
            try:
                handler, session = await BrokerProtocolHandler.init_from_connect(
                    reader, writer, self.plugins_manager
                )
            except MQTTError as exc:
                await writer.close()
                raise MQTTError(exc) from exc
            except (AMQTTError, NoDataError) as exc:
                raise AMQTTError(exc) from exc
            if not await Broker._authenticate(self, session, None):
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                await writer.close()
                raise MQTTError(f"refused client {session.client_id!r} (user {session.username!r})")
            return handler, await _adopt_session(self, session)

        async def _authenticate(self, session: Any, listener: Any) -> bool:
            return True  # done in _initialize_client_session, before the session was touched

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            topic_filter, qos = subscription
            subscribed = any(
                s.client_id == session.client_id for s, _ in self._subscriptions.get(topic_filter, [])
            )
            handler = self._get_handler(session)
            if not subscribed or handler is None:
                return
            sends = [
                asyncio.ensure_future(
                    handler.mqtt_publish(
                        retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                    )
                )
                for topic, retained in list(self._retained_messages.items())
                if self._matches(topic, topic_filter)
                and await self._topic_filtering(session, topic=topic, action=Action.RECEIVE)
            ]
            if sends:
                await asyncio.wait(sends)

    return CheckedBroker


async def _adopt_session(broker: Any, session: Any) -> Any:
    """Return the session a CONNECT whose credentials are known good gets, as amqtt's own
    ``_initialize_client_session`` decides: a clean one, or the stored one with the new CONNECT's
    attributes."""
    from amqtt.utils import gen_client_id

    if session.clean_session:
        if session.client_id:
            await broker._delete_session(session.client_id)
        else:
            session.client_id = gen_client_id()
        session.parent = 0
    elif session.client_id in broker._sessions:
        stored, _ = broker._sessions[session.client_id]
        for name in _CONNECT_ATTRIBUTES:
            setattr(stored, name, getattr(session, name))
        session = stored
        session.parent = 1
    else:
        session.parent = 0
    disconnect_delay = broker.config.get("timeout-disconnect-delay", 0)
    if session.keep_alive > 0 and isinstance(disconnect_delay, int):
        session.keep_alive += disconnect_delay
    return session


class EmbeddedBroker:
    """An amqtt broker running on its own event loop in a background thread.

    ``auth`` None means anonymous with no ACLs, for the demo only; give a ``BrokerAuth`` anywhere
    else.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1884, *, auth: BrokerAuth | None = None) -> None:
        self.host = host
        self.port = port
        self.auth = auth
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; raise :class:`BrokerStartError` if the broker cannot."""
        # amqtt logs every connection at INFO; keep the demo's console readable.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BrokerStartError(
                f"the embedded broker did not start on {self.host}:{self.port} in {timeout} s"
            )
        if self._error is not None:
            raise BrokerStartError(
                f"the embedded broker cannot listen on {self.host}:{self.port}: {self._error}; "
                "choose another port"
            ) from self._error

    def _run(self) -> None:
        broker_class = _broker_class()  # amqtt is imported only now: only the cloud extra has it
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        plugins: dict[str, dict[str, Any]]
        if self.auth is None:
            # The demo's mode: no credentials, no ACLs.
            plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        else:
            plugins = {
                "cloud.mqtt.auth.CredentialAuthPlugin": {"auth": self.auth},
                "cloud.mqtt.auth.AclTopicPlugin": {"auth": self.auth},
            }
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": plugins,
        }

        async def start() -> None:
            self._broker = broker_class(config)
            await self._broker.start()

        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        # amqtt can leave the connection of a client that left during shutdown half open: cancel
        # what still runs and let the transports close while the loop is alive, then close it.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        leftovers = [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, asyncio.StreamWriter) and obj.transport.get_extra_info("socket") is not None
        ]
        for writer in leftovers:
            if not writer.transport.is_closing() and getattr(writer, "_loop", None) is loop:
                writer.close()
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every client and stop listening."""
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            future.result(timeout)
        except Exception:  # shutting down anyway
            log.warning("embedded broker did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None
