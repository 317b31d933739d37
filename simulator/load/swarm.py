"""Load mode: thousands of fridge connections on one asyncio event loop, each its own device.

Every connection logs in with its own device id and secret (clean session off, as fridges do),
subscribes to its ``commands`` topic at QoS 1 and publishes ``item_added`` events at QoS 1; the
cloud's ``events_acknowledged`` commands are counted per device. The swarm publishes at a steady
rate for the whole swarm: event slot ``j`` is due ``j / rate`` seconds after the start and belongs
to device ``j mod N``, so every device publishes every ``N / rate`` seconds, and while devices
ramp up at ``connect_rate`` connections per second the slots of those not yet connected are
skipped (and counted). A device whose connection drops is counted as an error and stays down:
the swarm measures, it does not heal.

No thread per device and no MQTT library: a :class:`DeviceConnection` is an
:class:`asyncio.Protocol` speaking the few MQTT 3.1.1 packets it needs (CONNECT, SUBSCRIBE,
PUBLISH and PUBACK both ways, PINGREQ, DISCONNECT: :mod:`simulator.load.packets`), so 10,000
connections cost one socket and a few small objects each.

Each connection needs a file descriptor here and one in the broker: see :func:`raise_fd_limit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from shared import topics
from shared.errors import FrigoError, InvalidMessage
from shared.messages import EventsAcknowledged, ItemAdded, decode_command, encode
from simulator.load.broker import Credential
from simulator.load.packets import (
    BYE,
    CONNACK,
    MAX_PACKET_ID,
    PING,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBACK_FAILURE,
    MqttProtocolError,
    connect_packet,
    encode_string,
    puback_packet,
    publish_packet,
    split_packets,
    subscribe_packet,
)

# Mosquitto closes a connection silent for 1.5 x keepalive; an idle device pings at half of it.
KEEPALIVE_S = 60
# A broker that has not answered CONNECT and SUBSCRIBE by then is counted as a failed connection.
CONNECT_TIMEOUT_S = 10.0
# Unacknowledged publishes per device; a slot finding its device at the limit is skipped and
# counted, so a broker that falls behind shows as skipped events instead of unbounded buffers.
MAX_INFLIGHT = 100
# TCP handshakes and CONNECTs awaiting their answer at once: a slow broker slows the ramp down.
MAX_PENDING_CONNECTS = 500
# How often the pacer and the connector wake up; each catches up with every slot due since.
TICK_S = 0.005
# How often idle connections are checked for a PINGREQ or a dead broker.
HOUSEKEEPING_S = 1.0
# After sending stops: longest wait for the outstanding PUBACKs (and cloud acks, if awaited).
DRAIN_TIMEOUT_S = 60.0
# Longest wait for every connection to close after DISCONNECT.
CLOSE_TIMEOUT_S = 10.0
# File descriptors beyond one per connection: the interpreter's own, the broker's listeners.
FD_MARGIN = 1024
# Some GTIN, as in ``simulator/load/blast.py``: what the events add does not matter here.
EVENT_CODE = "4006381333931"


class FdLimitError(FrigoError, OSError):
    """The process may not open enough file descriptors for the swarm."""

    def __init__(self, needed: int, hard: int) -> None:
        super().__init__(
            f"{needed} file descriptors needed but the hard limit is {hard}: raise it "
            f"(`ulimit -Hn {needed}` as root, `LimitNOFILE={needed}` in a systemd unit, or "
            "nofile in /etc/security/limits.conf), or run fewer devices"
        )


def raise_fd_limit(connections: int) -> int:
    """Raise this process's soft file-descriptor limit for ``connections``; return the new limit.

    Child processes inherit it, so raise it before starting a broker for the swarm.
    """
    needed = connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise FdLimitError(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# --- One device --------------------------------------------------------------------------------


class State(Enum):
    """Where a device's connection stands."""

    IDLE = "idle"
    CONNECTING = "connecting"  # TCP up, CONNECT sent
    SUBSCRIBING = "subscribing"  # CONNACK accepted, SUBSCRIBE sent
    READY = "ready"  # subscribed: publishes its events
    CLOSED = "closed"


class DeviceConnection(asyncio.Protocol):
    """One fridge's connection: logs in as itself, publishes events, counts the cloud's acks."""

    def __init__(self, swarm: Swarm, credential: Credential) -> None:
        self.swarm = swarm
        self.device_id = credential.device_id
        self._secret = credential.secret
        self._events_topic = encode_string(topics.events(self.device_id))
        self.state = State.IDLE
        self.published = 0  # the last seq published: seqs 1..published went out
        self.pubacked = 0
        self._inflight: set[int] = set()
        self._next_id = 0
        # Acknowledged seqs: all of 1..acked_through, and these above a gap; duplicates count once.
        self.acked_through = 0
        self._acked_beyond: set[int] = set()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ready: asyncio.Future[bool] | None = None
        self._closed: asyncio.Future[None] | None = None
        self.last_sent = 0.0
        self.last_received = 0.0

    @property
    def acked(self) -> int:
        """Return how many of this device's events the cloud has acknowledged."""
        return self.acked_through + len(self._acked_beyond)

    @property
    def inflight(self) -> int:
        """Return how many publishes await the broker's PUBACK."""
        return len(self._inflight)

    async def connect(self, host: str, port: int) -> bool:
        """Connect, log in and subscribe; return whether the device is ready to publish."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._closed = loop.create_future()
        self.state = State.CONNECTING
        try:
            await loop.create_connection(lambda: self, host, port)
        except OSError:
            self.swarm.count_error("connect_failed")
            return False
        return await self._ready

    def publish_event(self) -> bool:
        """Publish this device's next event at QoS 1; False if not ready or at its inflight limit."""
        if self.state is not State.READY or len(self._inflight) >= self.swarm.max_inflight:
            return False
        assert self._transport is not None
        seq = self.published + 1
        event = ItemAdded(
            event_id=uuid.uuid4(),
            device_id=self.device_id,
            seq=seq,
            occurred_at=datetime.now(UTC),
            code=EVENT_CODE,
            lot_id=seq,
        )
        packet_id = self._packet_id()
        self._transport.write(publish_packet(self._events_topic, packet_id, encode(event)))
        self._inflight.add(packet_id)
        self.published = seq
        self.last_sent = time.monotonic()
        return True

    def keep_alive(self, now: float, keepalive_s: float) -> None:
        """Ping an idle connection; drop one the broker has not answered for too long."""
        if self.state is not State.READY or self._transport is None:
            return
        if now - self.last_received > 1.5 * keepalive_s:
            self.swarm.count_error("timeout")
            self.abort()
        elif now - self.last_sent >= keepalive_s / 2:
            self._transport.write(PING)
            self.last_sent = now

    def disconnect(self) -> None:
        """Say DISCONNECT (the broker then drops the Last Will, if any) and close."""
        if self._transport is None:
            return
        if self.state is State.READY:
            self._transport.write(BYE)
        self._transport.close()

    def abort(self) -> None:
        """Close the connection at once, without DISCONNECT."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is gone (immediately if it never opened)."""
        if self._closed is not None and self._transport is not None:
            await asyncio.shield(self._closed)

    def _packet_id(self) -> int:
        # At most ``max_inflight`` ids are taken, so this finds a free one within that many steps.
        for _ in range(len(self._inflight) + 1):
            self._next_id = self._next_id % MAX_PACKET_ID + 1
            if self._next_id not in self._inflight:
                break
        return self._next_id

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.last_sent = self.last_received = time.monotonic()
        keepalive = self.swarm.keepalive_s
        transport.write(connect_packet(self.device_id, self.device_id, self._secret, keepalive))

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self._buffer += data
        try:
            for first, body in split_packets(self._buffer):
                self._handle(first, body)
        except (MqttProtocolError, IndexError):
            self.swarm.count_error("protocol")
            self._fail()

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = State.CLOSED
        self._transport = None
        # The swarm does not reconnect, so nothing will PUBACK these: the drain must not wait for them.
        self._inflight.clear()
        if was is State.READY:
            self.swarm.device_disconnected(expected=self.swarm.stopping)
        elif self._ready is not None and not self._ready.done() and not self.swarm.stopping:
            self.swarm.count_error("connect_failed")  # closed before CONNACK or SUBACK
        self._settle(False)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # Packets from the broker

    def _handle(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBACK:
            packet_id = int.from_bytes(body[:2], "big")
            if packet_id in self._inflight:
                self._inflight.remove(packet_id)
                self.pubacked += 1
                self.swarm.count_puback()
        elif kind == PUBLISH:
            self._on_publish(first, body)
        elif kind == PINGRESP:
            pass
        elif kind == CONNACK and self.state is State.CONNECTING:
            if body[1] != 0:  # 4: bad username or password, 5: not authorized
                self.swarm.count_error("refused")
                self._fail()
                return
            assert self._transport is not None
            self.state = State.SUBSCRIBING
            self._transport.write(subscribe_packet(1, topics.commands(self.device_id), 1))
        elif kind == SUBACK and self.state is State.SUBSCRIBING:
            if body[2] == SUBACK_FAILURE:
                self.swarm.count_error("subscribe_refused")
                self._fail()
                return
            self.state = State.READY
            self.swarm.device_connected()
            self._settle(True)
        else:
            raise MqttProtocolError(f"unexpected packet 0x{first:02x} while {self.state.value}")

    def _on_publish(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 0x03
        topic_end = 2 + int.from_bytes(body[:2], "big")
        payload_start = topic_end
        if qos == 1:
            packet_id = int.from_bytes(body[topic_end : topic_end + 2], "big")
            payload_start += 2
            assert self._transport is not None
            self._transport.write(puback_packet(packet_id))
            self.last_sent = time.monotonic()
        elif qos:
            raise MqttProtocolError(f"a QoS {qos} PUBLISH on a QoS 1 subscription")
        try:
            command = decode_command(body[payload_start:])
        except InvalidMessage:
            self.swarm.count_error("invalid_command")
            return
        if isinstance(command, EventsAcknowledged) and command.device_id == self.device_id:
            before = self.acked
            for first_seq, last_seq in command.ranges:
                self._acknowledge(first_seq, last_seq)
            self.swarm.count_acked(self.acked - before)

    def _acknowledge(self, first: int, last: int) -> None:
        # Only seqs this run published: a range past them would be someone else's session.
        for seq in range(max(first, self.acked_through + 1), min(last, self.published) + 1):
            self._acked_beyond.add(seq)
        while self.acked_through + 1 in self._acked_beyond:
            self.acked_through += 1
            self._acked_beyond.remove(self.acked_through)

    def _fail(self) -> None:
        self._settle(False)
        self.abort()

    def _settle(self, ready: bool) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(ready)


# --- The swarm ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwarmStats:
    """A snapshot of the swarm's counters."""

    elapsed_s: float
    devices: int
    attempted: int  # connections started
    connected: int
    connected_max: int
    published: int
    pubacked: int
    acked: int  # events the cloud acknowledged (events_acknowledged), each counted once
    skipped: int  # event slots whose device was not connected or had MAX_INFLIGHT unacknowledged
    errors: dict[str, int] = field(default_factory=dict)
    # When every device's connection attempt had its answer (the ramp's end), from the start.
    ramp_s: float | None = None
    sending_s: float | None = None  # when sending stopped, from the start
    steady_published: int = 0  # events published between the ramp's end and the sending's
    connected_at_end: int = 0  # devices still connected when sending stopped
    # When the last PUBACK (and cloud ack, if awaited) came, from the start; None if it never did.
    drained_s: float | None = None

    @property
    def error_total(self) -> int:
        """Return every error counted, of any kind."""
        return sum(self.errors.values())

    @property
    def drain_s(self) -> float | None:
        """Return how long the last PUBACK (and ack) took after sending stopped, if it came."""
        if self.drained_s is None or self.sending_s is None:
            return None
        return self.drained_s - self.sending_s

    @property
    def steady_events_per_s(self) -> float | None:
        """Return the publish rate from the ramp's end to the sending's, if the ramp ended first."""
        if self.ramp_s is None or self.sending_s is None:
            return None
        window = self.sending_s - self.ramp_s
        return self.steady_published / window if window > 0 else None


class Swarm:
    """Connect many devices from one event loop and publish at a steady rate for the whole swarm."""

    def __init__(
        self,
        credentials: Sequence[Credential],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        rate: float = 100.0,
        connect_rate: float = 1000.0,
        duration_s: float = 10.0,
        keepalive_s: int = KEEPALIVE_S,
        max_inflight: int = MAX_INFLIGHT,
        await_acks: bool = False,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
    ) -> None:
        if not credentials:
            raise ValueError("a swarm needs at least one device")
        if rate <= 0 or connect_rate <= 0 or duration_s <= 0:
            raise ValueError("rate, connect rate and duration must be above 0")
        self.host, self.port = host, port
        self.rate, self.connect_rate, self.duration_s = rate, connect_rate, duration_s
        self.keepalive_s, self.max_inflight = keepalive_s, max_inflight
        self.await_acks, self.drain_timeout_s = await_acks, drain_timeout_s
        self.devices = [DeviceConnection(self, credential) for credential in credentials]
        self.stopping = False
        self._pubacked = 0
        self._acked = 0
        self._errors: Counter[str] = Counter()
        self._attempted = 0
        self._connected = 0
        self._connected_max = 0
        self._published = 0
        self._skipped = 0
        self._started = 0.0
        self._ramp_ended_at: float | None = None
        self._published_when_ramp_ended = 0
        self._sending_ended_at: float | None = None
        self._published_when_ended = 0
        self._connected_when_ended = 0
        self._drained_at: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """Return whether :meth:`run` has finished."""
        return self._done

    def count_error(self, kind: str) -> None:
        """Count one error of ``kind`` (refused, connect_failed, dropped, timeout, protocol, …)."""
        self._errors[kind] += 1

    def count_puback(self) -> None:
        """Count a PUBACK of one of the swarm's events."""
        self._pubacked += 1

    def count_acked(self, events: int) -> None:
        """Count events the cloud acknowledged for the first time."""
        self._acked += events

    def device_connected(self) -> None:
        """Count a device that became ready."""
        self._connected += 1
        self._connected_max = max(self._connected_max, self._connected)

    def device_disconnected(self, *, expected: bool) -> None:
        """Count a ready device whose connection closed; an error unless the swarm is stopping."""
        self._connected -= 1
        if not expected:
            self.count_error("dropped")

    def snapshot(self) -> SwarmStats:
        """Return the counters as they are now."""
        started = self._started or time.monotonic()
        ended = self._sending_ended_at
        ramp_ended = self._ramp_ended_at
        steady = 0
        if ramp_ended is not None:
            steady = (self._published_when_ended if ended is not None else self._published) - (
                self._published_when_ramp_ended
            )
        return SwarmStats(
            elapsed_s=time.monotonic() - started,
            devices=len(self.devices),
            attempted=self._attempted,
            connected=self._connected,
            connected_max=self._connected_max,
            published=self._published,
            pubacked=self._pubacked,
            acked=self._acked,
            skipped=self._skipped,
            errors=dict(self._errors),
            ramp_s=None if ramp_ended is None else ramp_ended - started,
            sending_s=None if ended is None else ended - started,
            steady_published=steady,
            connected_at_end=self._connected_when_ended if ended is not None else self._connected,
            drained_s=None if self._drained_at is None else self._drained_at - started,
        )

    async def run(self) -> SwarmStats:
        """Connect, publish for ``duration_s``, wait for the PUBACKs (and acks), disconnect."""
        self._started = time.monotonic()
        connector = asyncio.create_task(self._connect_all())
        housekeeper = asyncio.create_task(self._housekeep())
        try:
            await self._pace()
            self._sending_ended_at = time.monotonic()
            self._published_when_ended = self._published
            self._connected_when_ended = self._connected
            connector.cancel()
            await self._drain()
        finally:
            connector.cancel()
            housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeper
            await self._close_all()
            self._done = True
        return self.snapshot()

    async def _connect_all(self) -> None:
        """Start each device's connection on schedule: device ``i`` at ``i / connect_rate`` s."""
        pending: set[asyncio.Task[bool]] = set()
        slots = asyncio.Semaphore(MAX_PENDING_CONNECTS)
        try:
            for index, device in enumerate(self.devices):
                delay = self._started + index / self.connect_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(max(delay, TICK_S))
                await slots.acquire()
                self._attempted += 1
                task = asyncio.create_task(self._connect(device))
                pending.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(lambda _t: slots.release())
            if pending:
                await asyncio.wait(pending)
            self._ramp_ended_at = time.monotonic()
            self._published_when_ramp_ended = self._published
        finally:
            for task in pending:
                task.cancel()

    async def _connect(self, device: DeviceConnection) -> bool:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                return await device.connect(self.host, self.port)
        except TimeoutError:
            self.count_error("connect_failed")
            device.abort()
            return False

    async def _pace(self) -> None:
        """Publish every event slot when due, for ``duration_s`` seconds."""
        devices, count = self.devices, len(self.devices)
        slot = 0
        last_slot = int(self.duration_s * self.rate)
        while slot < last_slot:
            elapsed = time.monotonic() - self._started
            if elapsed >= self.duration_s:
                break
            due = min(int(elapsed * self.rate) + 1, last_slot)
            while slot < due:
                if devices[slot % count].publish_event():
                    self._published += 1
                else:
                    self._skipped += 1
                slot += 1
            await asyncio.sleep(TICK_S)

    async def _drain(self) -> None:
        """Wait, at most ``drain_timeout_s``, for every PUBACK (and every ack when awaited)."""
        deadline = time.monotonic() + self.drain_timeout_s
        while time.monotonic() < deadline:
            inflight = sum(device.inflight for device in self.devices)
            if inflight == 0 and (not self.await_acks or self._acked >= self._published):
                self._drained_at = time.monotonic()
                return
            await asyncio.sleep(0.05)

    async def _housekeep(self) -> None:
        """Ping idle connections and drop dead ones, every HOUSEKEEPING_S until cancelled."""
        while not self.stopping:
            await asyncio.sleep(HOUSEKEEPING_S)
            now = time.monotonic()
            for device in self.devices:
                device.keep_alive(now, self.keepalive_s)

    async def _close_all(self) -> None:
        self.stopping = True
        for device in self.devices:
            device.disconnect()
        waits = [device.wait_closed() for device in self.devices]
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*waits)
        except TimeoutError:
            for device in self.devices:
                device.abort()
