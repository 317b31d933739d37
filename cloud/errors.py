"""Errors of the cloud service.

FrigoError
└── CloudError
    ├── ConfigurationError (ValueError)   settings that cannot work
    └── BrokerStartError (OSError)        the embedded broker could not listen
"""

from __future__ import annotations

from shared.errors import FrigoError


class CloudError(FrigoError):
    """Root of the cloud service's errors."""


class ConfigurationError(CloudError, ValueError):
    """Settings that cannot work; the message names the setting to change."""


class BrokerStartError(CloudError, OSError):
    """The embedded broker could not start listening."""
