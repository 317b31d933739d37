"""Where the cloud may send requests: public addresses only, unless configuration allows more.

A retailer registers its webhook URL; without this check it could point the cloud at the cloud's
own loopback, the database's port or the cloud provider's metadata service (server-side request
forgery). The host is resolved and every address it resolves to must be public. The check runs
when the URL is registered and again before each delivery, because DNS can change in between.
``webhook_allow_private`` lets tests and LAN deployments deliver to loopback and private addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

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
    try:
        infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise EgressRefused(f"cannot resolve {hostname!r}: {exc}") from None
    if allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise EgressRefused(
                f"{hostname!r} resolves to {address}, a private, loopback or reserved address; "
                "use a public URL, or set FRIGO_CLOUD_WEBHOOK_ALLOW_PRIVATE=true on a trusted network"
            )
