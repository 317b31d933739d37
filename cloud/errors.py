"""Errors of the cloud service.

FrigoError
└── CloudError
    ├── ConfigurationError (ValueError)   settings that cannot work
    ├── BrokerStartError (OSError)        the embedded broker could not listen
    └── EvaluationDataError (ValueError)  an evaluation data file that cannot be read
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
