"""Errors of the cloud service.

FrigoError
└── CloudError
    ├── ConfigurationError (ValueError)   settings that cannot work
    ├── BrokerStartError (OSError)        the embedded broker could not listen
    ├── EvaluationDataError (ValueError)  an evaluation data file that cannot be read
    └── OrderStateError (ValueError)      a planned order that cannot change that way now
"""

from __future__ import annotations

from shared.errors import FrigoError


class CloudError(FrigoError):
    """Root of the cloud service's errors."""


class ConfigurationError(CloudError, ValueError):
    """Settings that cannot work; the message names the setting to change."""


class BrokerStartError(CloudError, OSError):
    """The embedded broker could not start listening."""


class EvaluationDataError(CloudError, ValueError):
    """An evaluation data file is missing or malformed; the message says what to fix."""


class OrderStateError(CloudError, ValueError):
    """A planned order asked to change in a way its state does not allow; says what the state is."""

    def __init__(self, order_id: str, status: str, wanted: str, detail: str = "") -> None:
        super().__init__(f"order {order_id} is {status}: it cannot be {wanted}{detail}")
        self.order_id = order_id
        self.status = status
