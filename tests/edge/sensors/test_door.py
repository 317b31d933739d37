"""The reed-switch door on gpiozero's mock pins, and the simulated door."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from edge.errors import SensorError
from edge.sensors.door import GpioDoor, SimulatedDoor

PIN = 17


def test_open_when_high_switch_to_ground_with_pull_up(factory: MockFactory) -> None:
    with GpioDoor(PIN, pin_factory=factory) as door:
        pin = factory.pin(PIN)
        assert pin.pull == "up"
        assert door.is_open()  # nothing pulls the pin down: an open (or unplugged) switch
        pin.drive_low()  # the magnet closes the switch
        assert not door.is_open()
        pin.drive_high()
        assert door.is_open()


def test_open_when_low_switch_to_3v3_with_pull_down(factory: MockFactory) -> None:
    with GpioDoor(PIN, pin_factory=factory, open_when_high=False) as door:
        pin = factory.pin(PIN)
        assert pin.pull == "down"
        assert door.is_open()
        pin.drive_high()
        assert not door.is_open()
        pin.drive_low()
        assert door.is_open()


def test_the_pin_is_reserved_until_closed(factory: MockFactory) -> None:
    door = GpioDoor(PIN, pin_factory=factory)
    with pytest.raises(SensorError, match=r"door switch on GPIO pin 17: .*already in use"):
        GpioDoor(PIN, pin_factory=factory)
    door.close()
    with pytest.raises(SensorError, match="cannot read the door switch"):
        door.is_open()
    with GpioDoor(PIN, pin_factory=factory) as again:
        assert again.is_open()


def test_an_invalid_pin_is_a_sensor_error(factory: MockFactory) -> None:
    with pytest.raises(SensorError, match="GPIO pin 99: 99 is not a valid pin name; check the pin number"):
        GpioDoor(99, pin_factory=factory)


def test_simulated_door_opens_and_closes() -> None:
    door = SimulatedDoor()
    assert not door.is_open()
    door.open()
    assert door.is_open()
    door.open()
    assert door.is_open()
    door.close()
    assert not door.is_open()
    assert SimulatedDoor(is_open=True).is_open()
