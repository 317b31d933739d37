"""A flaky network between fridges and the broker: TCP relays the simulator can cut and mend.

Each fridge that should suffer network drops connects to its own :class:`Link`, a relay on a
loopback port that passes bytes to the broker and back. :meth:`Link.cut` aborts the fridge's
connection as a dropped Wi-Fi would (the broker sees the socket die and publishes the fridge's
will) and turns away new connections until :meth:`Link.mend`. One asyncio loop in one thread
serves every link, so a hundred fridges cost one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Bytes read per chunk: MQTT batches are up to ~100 KB; larger reads only cost memory.
CHUNK = 64 * 1024
# How long opening a link or reaching the broker may take on loopback.
TIMEOUT_S = 5.0


class Link:
    """One relay: ``port`` on 127.0.0.1 leads to the broker while the link is whole."""

    def __init__(self, network: Network, target: tuple[str, int]) -> None:
        self._network = network
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut_off = False
        self.port = 0
        self.connections = 0  # accepted while whole, for tests and the report

    @property
    def is_cut(self) -> bool:
        """Return whether the link is down."""
        return self._cut_off

    def cut(self) -> None:
        """Drop every connection through the link and refuse new ones until :meth:`mend`."""
        self._network.call(self._cut())

    def mend(self) -> None:
        """Let connections through again."""
        self._cut_off = False

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _cut(self) -> None:
        self._cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self._target), TIMEOUT_S)
        except (OSError, TimeoutError):
            writer.transport.abort()  # the broker is away (restarting): the fridge retries
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until either side goes; then end the other side too."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()


async def _cancel_the_rest() -> None:
    """Cancel the relays still running, and wait for them to end."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Network:
    """The links of a run, served by one event loop in a thread; a context manager."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-network", daemon=True)
        self._thread.start()
        self._links: list[Link] = []

    def link(self, host: str, port: int) -> Link:
        """Open a link to the broker at ``host:port``; connect to its ``port`` instead."""
        link = Link(self, (host, port))
        self.call(link._open())
        self._links.append(link)
        return link

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the network's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(TIMEOUT_S)

    def close(self) -> None:
        """Close every link and stop the loop."""
        for link in self._links:
            with contextlib.suppress(Exception):  # closing must go on whatever one link does
                self.call(link._close())
        with contextlib.suppress(Exception):
            self.call(_cancel_the_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
