"""Errors of the wire contract and of the MQTT connection every component shares.

FrigoError
├── InvalidTopic (ValueError)
├── InvalidMessage (ValueError)
├── InsecureTransport (ValueError)        a password that would cross the network in clear text
└── BrokerRefused (ConnectionRefusedError) a broker that refuses this client whatever we retry
"""

from __future__ import annotations

from typing import Literal


class FrigoError(Exception):
    """Root of every error Frigo raises on purpose."""


class InvalidTopic(FrigoError, ValueError):
    """A topic or device id that is not part of the contract."""


class InvalidMessage(FrigoError, ValueError):
    """A payload that does not decode to a message of the contract."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InsecureTransport(FrigoError, ValueError):
    """MQTT settings that would send a password over plaintext to a broker on another host."""

    def __init__(self, host: str, port: int, username: str | None) -> None:
        who = f" of {username!r}" if username else ""
        super().__init__(
            f"refusing to send the MQTT password{who} to {host}:{port} without TLS: it would cross "
            "the network in clear text, readable by anyone on the way. Set mqtt.tls_ca_file to the "
            "broker's CA file to turn TLS on, or, on a network you trust, pass --insecure "
            "(setting mqtt.insecure = true)"
        )
        self.host = host
        self.port = port


RefusalKind = Literal["protocol", "tls", "login", "refused"]


class BrokerRefused(FrigoError, ConnectionRefusedError):
    """A broker that refused the connection for a reason that trying again will not change.

    ``kind`` is ``protocol`` (it does not speak this MQTT version), ``tls`` (it wants TLS, which the
    settings do not turn on), ``login`` (credentials) or ``refused`` (anything else final: banned,
    client id not valid).
    """

    def __init__(
        self, host: str, port: int, protocol: str, kind: RefusalKind, reason: str, username: str | None
    ) -> None:
        where = f"the broker at {host}:{port}"
        if kind == "protocol":
            other = "3.1.1" if protocol == "5" else "5"
            message = (
                f"{where} does not speak MQTT {protocol} ({reason}); use --mqtt-protocol {other} "
                f'(setting mqtt.protocol = "{other}"; the embedded broker speaks only 3.1.1)'
            )
        elif kind == "tls":
            message = (
                f"{where} expects TLS ({reason}); set mqtt.tls_ca_file to the broker's CA file to turn TLS on"
            )
        elif kind == "login":
            message = (
                f"{where} refused the login of {username!r}: {reason}; check mqtt.username and "
                "mqtt.password (a fridge's are its device id and the secret `frigo devices "
                "provision` printed for it)"
            )
        else:
            message = f"{where} refused the connection: {reason}; ask the broker's operator why"
        super().__init__(message)
        self.kind = kind
        self.reason = reason
