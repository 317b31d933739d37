"""Errors of the simulator.

FrigoError
└── SimulatorError
    ├── CatalogError (ValueError)    a catalog file that cannot be read
    │   └── InvalidProduct           a product attribute outside its domain
    ├── ScenarioError (ValueError)   a scenario that does not exist or cannot work
    └── ReportError (ValueError)     a run's report file that cannot be read
"""

from __future__ import annotations

from shared.errors import FrigoError


class SimulatorError(FrigoError):
    """Root of the simulator's errors."""


class CatalogError(SimulatorError, ValueError):
    """A catalog file that cannot be read; the message names the file, line and column."""


class InvalidProduct(CatalogError):
    """A product attribute outside its domain; ``field`` names it, ``expected`` says what fits."""

    def __init__(self, code: str, field: str, expected: str, value: object) -> None:
        super().__init__(f"product {code!r}, {field}: expected {expected}, got {value!r}")
        self.code = code
        self.field = field
        self.expected = expected
        self.value = value


class ScenarioError(SimulatorError, ValueError):
    """A scenario that does not exist or cannot work; the message says what to change."""


class ReportError(SimulatorError, ValueError):
    """A report file that cannot be read; the message names the file and line."""
