"""Errors of the wire contract.

FrigoError
├── InvalidTopic (ValueError)
└── InvalidMessage (ValueError)
"""

from __future__ import annotations


class FrigoError(Exception):
    """Root of every error Frigo raises on purpose."""


class InvalidTopic(FrigoError, ValueError):
    """A topic or device id that is not part of the contract."""


class InvalidMessage(FrigoError, ValueError):
    """A payload that does not decode to a message of the contract."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
