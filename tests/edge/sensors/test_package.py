"""The public surface of edge.sensors, and that importing it needs none of the Raspberry Pi libraries."""

from __future__ import annotations

import subprocess
import sys

import edge.sensors


def test_public_api() -> None:
    assert sorted(edge.sensors.__all__) == [
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
    assert all(hasattr(edge.sensors, name) for name in edge.sensors.__all__)


def test_importing_the_sensors_loads_neither_evdev_nor_gpiozero() -> None:
    code = (
        "import sys, edge.sensors, edge.calibration;"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('evdev', 'gpiozero'));"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_simulated_twins_implement_the_protocols() -> None:
    # Checked by mypy: a twin that drifted from its Protocol fails the type check of this assignment.
    scanner: edge.sensors.Scanner = edge.sensors.SimulatedScanner()
    shelf: edge.sensors.Shelf = edge.sensors.SimulatedShelf("s")
    door: edge.sensors.Door = edge.sensors.SimulatedDoor()
    thermometer: edge.sensors.Thermometer = edge.sensors.SimulatedThermometer("t", 4.0)
    assert (shelf.shelf_id, door.is_open(), thermometer.sensor_id) == ("s", False, "t")
    scanner.close()
    assert list(scanner.lines()) == []
