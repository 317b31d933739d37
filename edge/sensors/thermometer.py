"""Thermometers: DS18B20 probes on the Pi's 1-Wire bus (read through sysfs), and a simulated probe.

With ``dtoverlay=w1-gpio`` the kernel lists each probe as ``/sys/bus/w1/devices/28-<serial>/``; reading
its ``w1_slave`` starts a conversion and returns the scratchpad twice::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The first line ends in YES when the CRC matched; ``t=`` is the temperature in thousandths of a degree.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge.errors import SensorError

W1_DEVICES = Path("/sys/bus/w1/devices")

# The DS18B20's 1-Wire family code: its ids start with "28-".
FAMILY_PREFIX = "28-"

# A read after a CRC error usually succeeds (1-Wire noise is bursty); each read is a fresh conversion
# (750 ms), so the retries need no pause of their own.
CRC_RETRIES = 3

# What the probe holds after power-on before any conversion: 85 °C is a brown-out, not a reading.
POWER_ON_RESET_MILLIDEGREES = 85_000

_TEMPERATURE = re.compile(r"t=(-?[0-9]+)\s*$")


def find_probes(base: Path = W1_DEVICES) -> list[str]:
    """Return the ids of the DS18B20 probes the kernel lists under ``base``, sorted."""
    return sorted(path.name for path in base.glob(f"{FAMILY_PREFIX}*"))


def parse_w1_slave(text: str) -> float:
    """Return the °C in a ``w1_slave`` text; raise ValueError saying why it is not a good reading."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise ValueError(f"incomplete output {text!r}")
    if not lines[0].rstrip().endswith("YES"):
        raise ValueError("CRC mismatch")
    scratchpad = lines[0].partition(":")[0].split()
    if scratchpad and set(scratchpad) == {"00"}:
        # The kernel passes an all-zero scratchpad's CRC (it is 00 too): the data line is held low.
        raise ValueError("an all-zero scratchpad (data line shorted to GND?)")
    match = _TEMPERATURE.search(lines[1])
    if match is None:
        raise ValueError(f"no temperature in {lines[1]!r}")
    millidegrees = int(match.group(1))
    if millidegrees == POWER_ON_RESET_MILLIDEGREES:
        raise ValueError("the 85 °C power-on value (the probe lost power: check its 3.3 V supply)")
    return millidegrees / 1000


class Ds18b20Thermometer:
    """A DS18B20 probe read through the kernel's w1-therm driver."""

    def __init__(self, sensor_id: str | None = None, *, base: Path = W1_DEVICES) -> None:
        if sensor_id is None:
            sensor_id = self._only_probe(base)
        self._sensor_id = sensor_id
        self._path = base / sensor_id / "w1_slave"

    @property
    def sensor_id(self) -> str:
        """Return the probe's 1-Wire id, e.g. '28-01193a4f6d2c'."""
        return self._sensor_id

    def read_celsius(self) -> float:
        """Return the temperature in °C, retrying a bad read up to ``CRC_RETRIES`` times."""
        problem = ""
        for _ in range(1 + CRC_RETRIES):
            try:
                text = self._path.read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:
                raise SensorError(
                    f"DS18B20 probe {self._sensor_id} is not on the 1-Wire bus ({self._path} is missing): "
                    "check its wiring (3.3 V, GND, data with a 4.7 kΩ pull-up to 3.3 V)"
                ) from None
            except OSError as exc:
                problem = f"cannot read {self._path}: {exc.strerror or exc}"
                continue
            try:
                return parse_w1_slave(text)
            except ValueError as exc:
                problem = str(exc)
        raise SensorError(
            f"DS18B20 probe {self._sensor_id} gave no good reading in {1 + CRC_RETRIES} tries, "
            f"last: {problem}; check its wiring and the 4.7 kΩ pull-up, and shorten the cable"
        )

    @staticmethod
    def _only_probe(base: Path) -> str:
        probes = find_probes(base)
        if len(probes) == 1:
            return probes[0]
        if not probes:
            raise SensorError(
                f"no DS18B20 probe under {base}: check the probe's wiring and that the 1-Wire interface is "
                "on (dtoverlay=w1-gpio in /boot/firmware/config.txt)"
            )
        raise SensorError(
            f"{len(probes)} DS18B20 probes under {base} ({', '.join(probes)}): say which one to use"
        )


class SimulatedThermometer:
    """A probe whose temperature is set by hand."""

    def __init__(self, sensor_id: str, celsius: float) -> None:
        self._sensor_id = sensor_id
        self._celsius = celsius  # one float, set and read atomically: no lock needed across threads

    @property
    def sensor_id(self) -> str:
        """Return the probe's name."""
        return self._sensor_id

    def read_celsius(self) -> float:
        """Return the temperature set last."""
        return self._celsius

    def set(self, celsius: float) -> None:
        """Set the temperature the probe reads."""
        self._celsius = celsius
