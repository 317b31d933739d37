"""The fridge's sensors: what every driver implements (``base``), the Raspberry Pi drivers, their twins.

Importing this package loads neither evdev nor gpiozero (the ``pi`` extra): each real driver imports its
library when it is built, and says how to install it if it is missing.
"""

from edge.sensors.base import Door, Scanner, Shelf, Thermometer
from edge.sensors.door import GpioDoor, SimulatedDoor
from edge.sensors.scanner import EvdevScanner, KeyDecoder, SimulatedScanner, StdinScanner
from edge.sensors.thermometer import Ds18b20Thermometer, SimulatedThermometer, find_probes
from edge.sensors.weight import Hx711Shelf, SimulatedShelf

__all__ = [
    "Door",
    "Ds18b20Thermometer",
    "EvdevScanner",
    "GpioDoor",
    "Hx711Shelf",
    "KeyDecoder",
    "Scanner",
    "Shelf",
    "SimulatedDoor",
    "SimulatedScanner",
    "SimulatedShelf",
    "SimulatedThermometer",
    "StdinScanner",
    "Thermometer",
    "find_probes",
]
