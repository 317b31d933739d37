"""The flaky network: a link relays bytes both ways, a cut drops and refuses, a mend lets through."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from simulator.network import Link, Network


@pytest.fixture
def echo() -> Iterator[int]:
    """Serve an echo server on loopback; yield its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def ended(conn: socket.socket) -> bool:
    """Return whether the peer ended the connection (closed it, or reset it with bytes unread)."""
    try:
        return conn.recv(4) == b""
    except ConnectionResetError:
        return True


def roundtrip(link: Link, payload: bytes) -> bytes:
    """Send ``payload`` through the link; return what came back before the connection ended."""
    received = b""
    with socket.create_connection(("127.0.0.1", link.port), timeout=2) as conn:
        try:
            conn.sendall(payload)
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # a link that is cut may reset the connection rather than close it
    return received


def test_a_link_relays_both_ways_and_large_payloads_whole(echo: int) -> None:
    with Network() as network:
        link = network.link("127.0.0.1", echo)
        assert roundtrip(link, b"hello") == b"hello"
        big = bytes(range(256)) * 4000  # 1 MB: several reads and drains
        assert roundtrip(link, big) == big
        assert link.connections == 2


def test_a_cut_drops_open_connections_and_refuses_new_ones_until_mended(echo: int) -> None:
    with Network() as network:
        link = network.link("127.0.0.1", echo)
        with socket.create_connection(("127.0.0.1", link.port), timeout=2) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"

            link.cut()
            assert link.is_cut
            assert ended(conn)  # closed under the fridge's feet
        assert roundtrip(link, b"ping") == b""  # accepted and dropped at once

        link.mend()
        assert roundtrip(link, b"ping") == b"ping"
