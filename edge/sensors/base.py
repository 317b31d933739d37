"""The interfaces every sensor driver implements, real or simulated.

The agent polls door, thermometers and shelves from one thread at their own intervals and reads
the scanner on another, so each interface is a small blocking call. Real drivers live beside this
module (``scanner.py``, ``weight.py``, ``door.py``, ``thermometer.py``), each with a simulated twin
that the simulator and the tests drive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Scanner(Protocol):
    """A barcode scanner: one string per scan, as the scanner typed it (without the Enter)."""

    def lines(self) -> Iterator[str]:
        """Yield scanned lines as they come; end when the scanner goes away or is closed."""
        ...

    def close(self) -> None:
        """Stop reading and release the device; a blocked ``lines()`` ends."""
        ...


class Shelf(Protocol):
    """A weight shelf (load cells under one shelf), calibrated to grams."""

    @property
    def shelf_id(self) -> str:
        """Return the shelf's name, e.g. 'fridge-top'."""
        ...

    def read_grams(self) -> float:
        """Return the current load in grams (tare already subtracted)."""
        ...


class Door(Protocol):
    """The door's reed switch."""

    def is_open(self) -> bool:
        """Return whether the door is open now."""
        ...


class Thermometer(Protocol):
    """A temperature probe in one compartment."""

    @property
    def sensor_id(self) -> str:
        """Return the probe's name, e.g. 'fridge' or the DS18B20's 28-... id."""
        ...

    def read_celsius(self) -> float:
        """Return the temperature in °C; raise SensorError if the probe cannot be read."""
        ...
