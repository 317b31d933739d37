"""Where the cloud may send requests: public addresses only, unless configuration allows more.

A retailer registers its webhook URL; without this check it could point the cloud at the cloud's
own loopback, the database's port or the cloud provider's metadata service (server-side request
forgery). The host is resolved and every address it resolves to must be public. The check runs
when the URL is registered, before each delivery, and at the connection itself: :func:`client`
connects only to an address it has just checked, so a name that resolves to a public address for
the check and to a private one a moment later (DNS rebinding) reaches nothing.
``webhook_allow_private`` lets tests and LAN deployments deliver to loopback and private addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from cloud.errors import CloudError


class EgressRefused(CloudError, ValueError):
    """A URL the cloud will not call; the message says why and what to change."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise :class:`EgressRefused` unless ``url`` is http(s) to an address the cloud may call."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise EgressRefused(f"{url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise EgressRefused(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise EgressRefused(f"{url!r} has an invalid port") from None
    allowed_addresses(hostname, port, allow_private=allow_private)


def allowed_addresses(hostname: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``hostname`` and return its addresses, in the resolver's order; raise
    :class:`EgressRefused` if it does not resolve or, unless ``allow_private``, if any address is
    not public."""
    try:
        infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise EgressRefused(f"cannot resolve {hostname!r}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if allow_private:
        return addresses
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope is not part of it
        if not address.is_global or address.is_multicast:
            raise EgressRefused(
                f"{hostname!r} resolves to {address}, a private, loopback or reserved address; "
                "use a public URL, or set FRIGO_CLOUD_WEBHOOK_ALLOW_PRIVATE=true on a trusted network"
            )
    return addresses


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
        addresses = allowed_addresses(host, port, allow_private=self._allow_private)
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # as socket.create_connection does: the next one if one fails
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
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
        # httpx 0.28 gives no way to pass a network backend to the pool it builds: replace the pool
        # (httpx's own defaults: verified TLS, 100 connections, 20 kept alive for 5 s).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(allow_private),
        )


def client(*, allow_private: bool, timeout: float) -> httpx.Client:
    """Return an HTTP client that connects only to addresses the policy allows, checked at each
    connection; redirects are not followed (a redirect could lead anywhere)."""
    return httpx.Client(
        transport=_CheckedTransport(allow_private),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
