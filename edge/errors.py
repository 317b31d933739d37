"""Errors of the edge agent.

FrigoError
└── EdgeError
    ├── ConfigError (ValueError)     settings that cannot work
    ├── ScanError (ValueError)       a scanner line that is not in the grammar
    ├── NotInFridge (LookupError)    removing something the fridge does not hold
    ├── NothingToDo (LookupError)    opening what is open, moving what is there already
    ├── StorageError (OSError)       the local database cannot be opened or written
    └── SensorError (OSError)        a sensor that cannot be read
"""

from __future__ import annotations

from shared.errors import FrigoError


class EdgeError(FrigoError):
    """Root of the edge agent's errors."""


class ScanError(EdgeError, ValueError):
    """A scanner line that is not in the grammar."""


class NotInFridge(EdgeError, LookupError):
    """A removal of a product the fridge does not hold."""

    def __init__(self, code: str) -> None:
        super().__init__(f"{code} is not in the fridge: scan it in with +{code} first")
        self.code = code


class StorageError(EdgeError, OSError):
    """The local database cannot be opened or written."""


class SensorError(EdgeError, OSError):
    """A sensor that cannot be read; the message names the device and what to check."""


class ConfigError(EdgeError, ValueError):
    """Settings that cannot work; the message says which and where they came from."""


class NothingToDo(EdgeError, LookupError):
    """An action with nothing left to act on: every lot is open already, or already there."""
