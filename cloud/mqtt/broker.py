"""The embedded MQTT broker (amqtt) for the demo and small homes: nothing to install.

amqtt speaks MQTT 3.1.1 only and carries ~1,500 QoS 1 msg/s on a full core; a fleet needs
Mosquitto (see README).

Without ``auth`` the broker is anonymous and has no ACLs: anyone who reaches the port may publish
as any fridge and read everything. That mode is for ``frigo demo`` on 127.0.0.1 only. With a
:class:`cloud.mqtt.auth.BrokerAuth`, devices log in with their provisioned secrets and the same
ACLs as Mosquitto's confine them to their own topics.

A client of another MQTT version (MQTT 5, 3.1) gets a CONNACK refusing its protocol version and
one warning in the log: amqtt would read its CONNECT as 3.1.1, wait for bytes that never come,
and leave an asyncio traceback once the client gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from typing import TYPE_CHECKING, Any

from cloud.errors import BrokerBusy, BrokerStartError

if TYPE_CHECKING:
    from cloud.mqtt.auth import BrokerAuth

log = logging.getLogger(__name__)

# amqtt's shutdown takes ~50 ms; one still running after this has a client reader to unstick.
UNSTICK_READERS_AFTER_S = 1.0

# The protocol level a CONNECT names, and the only one amqtt speaks (MQTT 3.1.1).
_MQTT_311 = 4
_VERSIONS = {3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5"}
_CONNECT = 0x10
# A CONNECT's protocol name: "MQTT" (3.1.1 and 5) or "MQIsdp" (3.1).
_PROTOCOL_NAMES = (b"MQTT", b"MQIsdp")
# CONNACK, return code 0x01 "unacceptable protocol version", in the 3.1.1 layout that MQTT 3.1.1
# (section 3.1.2.2) says to answer an unsupported level with; paho's MQTT 5 client reads it as a
# refusal ("Unsupported protocol version").
_REFUSE_VERSION = bytes([0x20, 0x02, 0x00, 0x01])


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
    from amqtt.mqtt.connack import NOT_AUTHORIZED, SERVER_UNAVAILABLE, ConnackPacket
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    class CheckedBroker(Broker):  # type: ignore[misc]  # amqtt has no type hints
        async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
            head, level = await _read_connect_head(reader)
            if level is not None and level != _MQTT_311:
                await _refuse_version(writer, level)
                return
            try:
                await Broker._client_connected(self, listener_name, _Replay(reader, head), writer)
            except OSError as exc:  # a client gone mid-handshake: not worth asyncio's traceback
                log.info("MQTT connection from %s ended: %s", _peer(writer), exc)

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
            refusal = NOT_AUTHORIZED
            try:
                admitted = await Broker._authenticate(self, session, None)
            except BrokerBusy:  # cloud/mqtt/auth.py: too many checks pending; the client retries
                admitted, refusal = False, SERVER_UNAVAILABLE
            if not admitted:
                await ConnackPacket.build(0, refusal).to_stream(writer)
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


async def _read_connect_head(reader: Any) -> tuple[bytes, int | None]:
    """Read a CONNECT up to its protocol level; return the bytes read and the level.

    The level is None when the bytes are not the start of a CONNECT, or the stream ended: amqtt
    then handles them (they are replayed to it) as it always has.
    """
    head = bytearray()

    async def take(count: int) -> bytes:
        try:
            chunk = bytes(await reader.read(count))
        except asyncio.IncompleteReadError as exc:
            chunk = exc.partial
        except OSError:
            chunk = b""
        head.extend(chunk)
        return chunk

    if await take(1) != bytes([_CONNECT]):
        return bytes(head), None
    for _ in range(4):  # the remaining length: 1 to 4 bytes, the last without the high bit
        byte = await take(1)
        if not byte:
            return bytes(head), None
        if not byte[0] & 0x80:
            break
    name_length = await take(2)
    if len(name_length) < 2 or int.from_bytes(name_length, "big") > max(map(len, _PROTOCOL_NAMES)):
        return bytes(head), None
    if await take(int.from_bytes(name_length, "big")) not in _PROTOCOL_NAMES:
        return bytes(head), None
    level = await take(1)
    return bytes(head), level[0] if level else None


async def _refuse_version(writer: Any, level: int) -> None:
    """Answer a CONNECT of an unsupported protocol level with a refusing CONNACK and hang up."""
    version = _VERSIONS.get(level, f"protocol level {level}")
    log.warning(
        "refused the MQTT connection from %s: it speaks %s, the embedded broker only MQTT 3.1.1; "
        "set the client's MQTT protocol to 3.1.1, or run Mosquitto for MQTT 5",
        _peer(writer),
        version,
    )
    with contextlib.suppress(OSError):  # the client may be gone already
        writer.write(_REFUSE_VERSION)
        await writer.drain()
        await writer.close()


def _peer(writer: Any) -> str:
    peer = writer.get_peer_info()
    return f"{peer[0]}:{peer[1]}" if peer else "an unknown address"


class _RefusalsLoggedElsewhere(logging.Filter):
    """Drop amqtt's warning for each refused CONNECT: cloud/mqtt/auth.py logs refusals already, a
    flood of them once a minute, and a warning each would flood the log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to initialize client session: refused client" not in record.getMessage()


class _Replay:
    """A reader (amqtt's ``ReaderAdapter`` interface) that first gives back bytes already read."""

    def __init__(self, reader: Any, head: bytes) -> None:
        self._reader = reader
        self._head = head

    async def read(self, n: int = -1) -> bytes:
        """Read ``n`` bytes (-1: up to the end), the replayed ones first."""
        if not self._head:
            return bytes(await self._reader.read(n))
        if n < 0:
            taken, self._head = self._head, b""
            return taken + bytes(await self._reader.read(n))
        taken, self._head = self._head[:n], self._head[n:]
        if len(taken) == n:
            return taken
        try:
            return taken + bytes(await self._reader.read(n - len(taken)))
        except asyncio.IncompleteReadError as exc:
            raise asyncio.IncompleteReadError(taken + exc.partial, n) from None

    def feed_eof(self) -> None:
        """Pass the end of the stream on to the wrapped reader."""
        self._reader.feed_eof()


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
        amqtt_broker = logging.getLogger("amqtt.broker")
        if not any(isinstance(f, _RefusalsLoggedElsewhere) for f in amqtt_broker.filters):
            amqtt_broker.addFilter(_RefusalsLoggedElsewhere())
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
        future = asyncio.run_coroutine_threadsafe(_shutdown(broker), loop)
        try:
            future.result(timeout)
        except Exception:  # shutting down anyway
            log.warning("embedded broker did not shut down cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        self._thread = None


async def _shutdown(broker: Any) -> None:
    """Shut amqtt down; end the wait of a client reader that lost its cancellation.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that comes as the read it wraps
    completes (CPython gh-86296). amqtt stops a client by cancelling its reader, so when a packet
    arrives at that moment (a PUBACK, say) the reader waits for the next one, up to the client's
    keep-alive, and the shutdown with it. End of stream ends that wait: the reader stops at once.
    """
    handlers = [handler for _, handler in list(broker._sessions.values()) if handler is not None]
    shutdown = asyncio.ensure_future(broker.shutdown())
    done, _ = await asyncio.wait([shutdown], timeout=UNSTICK_READERS_AFTER_S)
    if not done:
        for handler in handlers:
            if handler.reader is not None:
                handler.reader.feed_eof()
    await shutdown
