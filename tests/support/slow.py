"""A retailer's webhook server on 127.0.0.1 that answers badly: a byte at a time, or without end."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

# A complete answer, sent one byte at a time: 46 bytes, so 46 s at a byte a second.
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
# A head with neither a length nor chunking: the body runs until the server closes the connection.
ENDLESS_HEAD = b"HTTP/1.1 %d Whatever\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n"


@dataclass
class Visit:
    """One connection the server took: when, the request's path, and when the client left."""

    accepted: float  # time.monotonic()
    path: str = ""
    left: float | None = None  # when a send failed: the client had closed the connection
    sent: int = 0  # bytes of the answer sent


@dataclass
class SlowReceiver:
    """Answer every POST with ``head`` at once, then ``answer`` one byte each ``every_s`` seconds (a
    drip); or, with ``endless_status``, a head of that status and then body bytes as fast as the
    client takes them, up to ``limit`` bytes (an endless body, cut only so a failing test ends)."""

    every_s: float = 1.0
    answer: bytes = NO_CONTENT
    head: bytes = b""
    endless_status: int | None = None
    limit: int = 256 * 1024 * 1024
    visits: list[Visit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open = 0
        self.most_open = 0  # the most connections open at once
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def url(self, path: str = "/slow") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self) -> list[Visit]:
        with self._lock:
            return list(self.visits)

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(5)
        self._server.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            visit = Visit(time.monotonic())
            with self._lock:
                self.visits.append(visit)
                self._open += 1
                self.most_open = max(self.most_open, self._open)
            thread = threading.Thread(target=self._serve, args=(connection, visit), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket, visit: Visit) -> None:
        with connection:
            try:
                visit.path = self._read_request(connection)
                if self.endless_status is None:
                    self._drip(connection, visit)
                else:
                    self._endless(connection, visit)
            except OSError:
                visit.left = time.monotonic()
            finally:
                with self._lock:
                    self._open -= 1

    def _read_request(self, connection: socket.socket) -> str:
        connection.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                raise ConnectionResetError("the client left before its request was complete")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0
        )
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return lines[0].split(" ")[1]

    def _drip(self, connection: socket.socket, visit: Visit) -> None:
        connection.sendall(self.head)
        visit.sent += len(self.head)
        for byte in self.answer:
            if self._stop.wait(0 if visit.sent == 0 else self.every_s):
                return
            connection.sendall(bytes([byte]))  # OSError once the client has closed: it left
            visit.sent += 1
        self._stop.wait(60)  # answered: keep the connection open as a slow server might

    def _endless(self, connection: socket.socket, visit: Visit) -> None:
        connection.sendall(ENDLESS_HEAD % self.endless_status)
        chunk = b"x" * 65536
        while visit.sent < self.limit and not self._stop.is_set():
            connection.sendall(chunk)
            visit.sent += len(chunk)
