"""Where the cloud may send requests: https to public addresses on port 443, within a deadline.

A retailer registers its webhook URL; without these checks it could point the cloud at the cloud's
own loopback, the database's port or the cloud provider's metadata service (server-side request
forgery), or have household order data sent in clear text. So a URL must be ``https://`` on port
443, and its host must resolve to public addresses only. An IPv6 address that carries an IPv4
address (IPv4-mapped or -compatible, NAT64, 6to4, Teredo) reaches that IPv4 address, so the one it
carries must be public too: ``64:ff9b::7f00:1`` is 127.0.0.1 behind a NAT64 gateway.

``webhook_allow_private`` (tests and trusted LANs) lets the cloud call private and loopback
addresses, and, to a receiver on this machine's loopback only, plain ``http://`` on any port: the
tests' and the simulator's receivers listen on whatever free port they get.

The checks run when the URL is registered, before each delivery, and at the connection itself:
:func:`client` connects only to an address it has just checked, so a name that resolves to a
public address for the check and to a private one a moment later (DNS rebinding) reaches nothing.

:func:`deadline` bounds a whole exchange: every connection, TLS handshake, write and read made in
its block waits at most for what is left of it, so a receiver that answers one byte at a time is
cut off when the time is up, not after each of its bytes has come within a per-read timeout.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from cloud.errors import CloudError
from shared.mqtt import is_loopback

# The only port a webhook goes to outside this machine: HTTPS's. Any other port on a public host is
# some other service (SMTP, a database, an admin console), and the cloud must not be the way in.
HTTPS_PORT = 443
# The largest piece handed to one socket write, so each waits at most for what is left of the deadline.
WRITE_CHUNK = 16 * 1024

# NAT64 (RFC 6052's well-known prefix; RFC 8215's local-use one) and the IPv4-translated range.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
# Where RFC 6052 puts the IPv4 address for each prefix length: byte ranges of the IPv6 address
# (byte 8, bits 64 to 71, is always skipped). The local-use prefix may be any of /48 to /96, and
# nothing says which one a network chose, so each reading must give a public address.
_RFC6052_BYTES = {96: ((12, 16),), 64: ((9, 13),), 56: ((7, 8), (9, 12)), 48: ((6, 8), (9, 11))}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(CloudError, ValueError):
    """A URL the cloud will not call; the message says why and what to change."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise :class:`EgressRefused` unless the cloud may send a webhook to ``url``."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise EgressRefused(f"{url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise EgressRefused(f"{url!r} is not an https:// URL with a host")
    try:
        port = parts.port or (HTTPS_PORT if parts.scheme == "https" else 80)
    except ValueError:
        raise EgressRefused(f"{url!r} has an invalid port") from None
    allowed_addresses(hostname, port, allow_private=allow_private, plaintext=parts.scheme == "http")


def allowed_addresses(hostname: str, port: int, *, allow_private: bool, plaintext: bool = False) -> list[str]:
    """Resolve ``hostname``; return its addresses, in the resolver's order, if the cloud may call
    them on ``port`` (in clear text if ``plaintext``); else raise :class:`EgressRefused`."""
    try:
        infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise EgressRefused(f"cannot resolve {hostname!r}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    # Loopback is this machine: what allow_private trusts enough for any port and for clear text.
    if allow_private and all(is_loopback(text.split("%", 1)[0]) for text in addresses):
        return addresses
    if not allow_private:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope is not part of it
            reason = refusal(address)
            if reason is not None:
                raise EgressRefused(
                    f"{hostname!r} resolves to {reason}, a private, loopback or reserved address; use "
                    "a public URL, or set FRIGO_CLOUD_WEBHOOK_ALLOW_PRIVATE=true on a trusted network"
                )
    if plaintext:
        raise EgressRefused(
            f"{hostname!r}: webhooks carry household orders, so they go over https:// only "
            "(http:// only to this machine's loopback, with FRIGO_CLOUD_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    if port != HTTPS_PORT:
        raise EgressRefused(
            f"{hostname!r} port {port}: webhooks go to port {HTTPS_PORT} only; "
            "serve the endpoint on the standard https:// port"
        )
    return addresses


def refusal(address: IPAddress) -> str | None:
    """Return what makes ``address`` not public (itself, or an IPv4 address it carries), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        for how, inner in embedded_ipv4(address):
            if not _public(inner):
                return f"{address}, which carries {inner} ({how})"
    return None if _public(address) else str(address)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Return each IPv4 address that ``address`` carries, with the name of the way it carries it."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    if address in _COMPATIBLE:
        found.append(("IPv4-compatible", _last_32_bits(address)))
    if address in _TRANSLATED:
        found.append(("IPv4-translated", _last_32_bits(address)))
    if address in _NAT64:
        found.append(("NAT64", _last_32_bits(address)))
    if address in _NAT64_LOCAL:
        packed = address.packed
        for length, spans in _RFC6052_BYTES.items():
            inner = ipaddress.IPv4Address(b"".join(packed[start:end] for start, end in spans))
            found.append((f"NAT64 /{length}", inner))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client_ = address.teredo
        found.extend((("Teredo server", server), ("Teredo", client_)))
    return found


def _last_32_bits(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


# -- one deadline for a whole exchange --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deadline:
    """The moment (``time.monotonic()``) by which an exchange must be over, and its length."""

    at: float
    seconds: float

    def remaining(self) -> float:
        """Return the seconds left (negative once passed)."""
        return self.at - time.monotonic()

    @property
    def passed(self) -> bool:
        """Say whether the time is up."""
        return self.remaining() <= 0


# Per thread (each has its own context): the deadline of the exchange that thread is making.
_DEADLINE: ContextVar[Deadline | None] = ContextVar("egress_deadline", default=None)
# Per thread: whether the request being sent is plain http://, so its connection must stay on loopback.
_PLAINTEXT: ContextVar[bool] = ContextVar("egress_plaintext", default=False)


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Bound every connection, TLS handshake, write and read the egress :func:`client` makes in this
    block, in this thread, to ``seconds`` in all; past it, each raises httpcore's timeout error."""
    bound = Deadline(time.monotonic() + seconds, seconds)
    token = _DEADLINE.set(bound)
    try:
        yield bound
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """Return ``timeout`` cut to what is left of the current deadline; raise ``error`` if none is."""
    bound = _DEADLINE.get()
    if bound is None:
        return timeout
    left = bound.remaining()
    if left <= 0:
        raise error(f"the {bound.seconds:g} s deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most for what is left of the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):
            self._inner.write(buffer[start : start + WRITE_CHUNK], _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


# -- the client ---------------------------------------------------------------------------------------


class _CheckedBackend(httpcore.NetworkBackend):
    """Open TCP connections only to addresses checked by :func:`allowed_addresses` just before.

    TLS still verifies the certificate for the URL's host name: httpcore passes that name, not
    the address, as the server name when it starts TLS on the stream returned here.
    """

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = allowed_addresses(
            host, port, allow_private=self._allow_private, plaintext=_PLAINTEXT.get()
        )
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # as socket.create_connection does: the next one if one fails
            bounded = _bounded(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, bounded, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None  # getaddrinfo returns at least one address or raises
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused(f"the cloud does not call Unix sockets ({path!r})")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        # httpx gives no way to pass a network backend to the pool it builds: replace the pool
        # (httpx's own defaults: verified TLS, 100 connections, 20 kept alive for 5 s).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(allow_private),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The backend sees a host and a port, not the scheme: tell it when the request is in clear
        # text. A kept-alive connection is reused only for the same scheme, host and port.
        token = _PLAINTEXT.set(request.url.scheme == "http")
        try:
            return super().handle_request(request)
        finally:
            _PLAINTEXT.reset(token)


def client(*, allow_private: bool, timeout: float) -> httpx.Client:
    """Return an HTTP client that connects only to addresses the policy allows, checked at each
    connection; redirects are not followed (a redirect could lead anywhere)."""
    return httpx.Client(
        transport=_CheckedTransport(allow_private),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
