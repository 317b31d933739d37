"""The embedded MQTT broker (amqtt) for the demo and small homes: nothing to install.

amqtt speaks MQTT 3.1.1 only and carries ~1,500 QoS 1 msg/s on a full core; a fleet needs
Mosquitto (see README).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any

from cloud.errors import BrokerStartError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """An amqtt broker running on its own event loop in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1884) -> None:
        self.host = host
        self.port = port
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
        from amqtt.broker import Broker  # imported here: only the cloud extra installs amqtt

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def start() -> None:
            self._broker = Broker(config)
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
