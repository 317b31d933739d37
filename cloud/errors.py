"""Errors of the cloud service.

FrigoError
└── CloudError
    ├── ConfigurationError (ValueError)   settings that cannot work
    ├── BrokerStartError (OSError)        the embedded broker could not listen
    ├── BrokerBusy (ConnectionRefusedError) the embedded broker refused a CONNECT: too many logins at once
    ├── EvaluationDataError (ValueError)  an evaluation data file that cannot be read
    ├── OrderStateError (ValueError)      an order that cannot change that way now (409)
    ├── VersionMismatch (ValueError)      If-Match named another version of the order (412)
    └── OrderInputError (ValueError)      an order the request cannot make: unknown product, full slot (422)
"""

from __future__ import annotations

from shared.errors import FrigoError


class CloudError(FrigoError):
    """Root of the cloud service's errors."""


class ConfigurationError(CloudError, ValueError):
    """Settings that cannot work; the message names the setting to change."""


class BrokerStartError(CloudError, OSError):
    """The embedded broker could not start listening."""


class BrokerBusy(CloudError, ConnectionRefusedError):
    """The embedded broker refused a CONNECT without checking it: too many checks were pending."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} credential checks are pending: connect again in a moment")
        self.pending = pending


class EvaluationDataError(CloudError, ValueError):
    """An evaluation data file is missing or malformed; the message says what to fix."""


class OrderStateError(CloudError, ValueError):
    """An order asked to change in a way its state does not allow; says what the state is."""

    def __init__(self, order_id: str, status: str, wanted: str, detail: str = "") -> None:
        super().__init__(f"order {order_id} is {status}: it cannot be {wanted}{detail}")
        self.order_id = order_id
        self.status = status


class VersionMismatch(CloudError, ValueError):
    """The request's If-Match names a version the order no longer has."""

    def __init__(self, order_id: str, version: int, given: str) -> None:
        super().__init__(
            f"order {order_id} is at version {version}, not {given}: GET it again and retry with "
            f'If-Match: "{version}"'
        )
        self.version = version


class OrderInputError(CloudError, ValueError):
    """An order that cannot be made from this request; the message says what to change."""
