"""A fresh gpiozero mock pin factory per test, closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """A mock GPIO pin factory of this test's own (no real pins, no global state)."""
    factory = MockFactory()
    yield factory
    factory.close()
