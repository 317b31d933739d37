"""Build the real sensors a fridge's settings describe (the `pi` extra's drivers)."""

from __future__ import annotations

from edge.agent import Sensors
from edge.calibration import CalibrationStore
from edge.errors import SensorError
from edge.sensors.base import Shelf, Thermometer
from edge.settings import EdgeSettings


def build_sensors(settings: EdgeSettings) -> Sensors:
    """Open every sensor the settings name; raise SensorError saying which one failed and why."""
    config = settings.sensors
    sensors = Sensors()
    if config.scanner == "evdev":
        if config.scanner_device is None:
            raise SensorError("sensors.scanner is 'evdev' but sensors.scanner_device is not set")
        from edge.sensors.scanner import EvdevScanner

        sensors.scanner = EvdevScanner(config.scanner_device)
    if config.door_pin is not None:
        from edge.sensors.door import GpioDoor

        sensors.door = GpioDoor(config.door_pin)
    if config.thermometers:
        from edge.sensors.thermometer import Ds18b20Thermometer

        probes: list[Thermometer] = [
            Ds18b20Thermometer(None if probe == "auto" else probe) for probe in config.thermometers
        ]
        sensors.thermometers = probes
    if config.shelves:
        from edge.sensors.weight import Hx711Shelf

        store = CalibrationStore.in_data_dir(settings.data_dir)
        shelves: list[Shelf] = []
        for shelf in config.shelves:
            calibration = store.get(shelf.shelf_id)
            if calibration is None:
                raise SensorError(
                    f"shelf {shelf.shelf_id} is not calibrated: run `frigo edge calibrate {shelf.shelf_id}`"
                )
            shelves.append(
                Hx711Shelf(
                    shelf.shelf_id,
                    shelf.dout_pin,
                    shelf.sck_pin,
                    scale=calibration.scale,
                    offset=calibration.offset,
                )
            )
        sensors.shelves = shelves
    return sensors
