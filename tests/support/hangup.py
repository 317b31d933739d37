"""A server that hangs up: what a broker that does not speak a client's protocol may do."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hanging_up_server() -> Iterator[tuple[int, list[bytes]]]:
    """Listen on a free port; read each connection's first packet and close it without a word."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    port = int(server.getsockname()[1])
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                received.append(conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        stop.set()
        thread.join(5)
        server.close()
