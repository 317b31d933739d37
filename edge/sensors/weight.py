"""Weight shelves: load cells behind an HX711 amplifier on two GPIO pins, and a simulated shelf.

The HX711 has its own two-wire protocol: DOUT goes low when a conversion is ready, then each SCK pulse
shifts out one of 24 bits (two's complement, most significant first); 1 to 3 more pulses pick the channel
and gain of the next conversion. gpiozero reserves the pins; the bits are banged on its raw pin objects,
which are much faster than its device layer.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from edge.errors import SensorError

if TYPE_CHECKING:
    from gpiozero import Factory

# Median of this many conversions per reading: it rejects an odd corrupted conversion (when the thread
# is descheduled with SCK high for over 60 µs the HX711 powers down mid-read) for 0.3 s per reading at
# the HX711's default 10 conversions/s, which the agent's poll loop can afford per shelf.
SAMPLES = 3

# The HX711 converts at 10/s (80/s with RATE high), so a conversion not ready after this long means the
# board is unpowered or DOUT is not connected (its pull-up then holds it high).
READY_TIMEOUT_S = 0.5

# How often to look at DOUT while waiting: a tenth of the fastest conversion period.
READY_POLL_S = 0.001

DATA_BITS = 24
# One pulse after the data selects channel A at gain 128 for the next conversion (2: B/32, 3: A/64).
GAIN_PULSES = 1

# The ADC's limits: a reading there means the input is out of range (a loose load-cell wire, overload).
_RAW_MAX = (1 << (DATA_BITS - 1)) - 1
_RAW_MIN = -(1 << (DATA_BITS - 1))

# Taking off what was put on must not fail on float rounding (0.1 + 0.2 > 0.3).
_ROUNDING_G = 1e-6


class _Pin(Protocol):
    """The part of a gpiozero pin the driver uses."""

    state: bool


def _import_gpiozero(what: str) -> Any:  # gpiozero has no type hints
    try:
        import gpiozero
    except ImportError as exc:
        raise SensorError(
            f"cannot use {what}: gpiozero is not installed; "
            "install the Raspberry Pi extra: pip install 'frigo[pi]'"
        ) from exc
    return gpiozero


class Hx711Shelf:
    """A shelf on load cells read through an HX711 (channel A, gain 128)."""

    def __init__(
        self,
        shelf_id: str,
        dout_pin: int | str,
        sck_pin: int | str,
        *,
        scale: float,
        offset: float,
        pin_factory: Factory | None = None,
        samples: int = SAMPLES,
    ) -> None:
        if scale == 0:
            raise ValueError(
                f"shelf {shelf_id}: scale must not be 0; calibrate it with 'frigo edge calibrate'"
            )
        if samples < 1:
            raise ValueError(f"shelf {shelf_id}: samples must be at least 1, not {samples}")
        self._shelf_id = shelf_id
        self.scale = scale
        self.offset = offset
        self.samples = samples
        self._where = f"HX711 of shelf {shelf_id} (DOUT {dout_pin}, SCK {sck_pin})"
        gpiozero = _import_gpiozero(f"the {self._where}")
        self._lock = threading.Lock()  # one conversion at a time: the protocol has no framing
        self._devices: list[Any] = []
        try:
            # The pull-up makes an unconnected DOUT read "not ready" rather than random bits.
            dout = gpiozero.InputDevice(dout_pin, pull_up=True, pin_factory=pin_factory)
            self._devices.append(dout)
            # SCK starts low: held high for over 60 µs, the HX711 powers down.
            sck = gpiozero.OutputDevice(sck_pin, initial_value=False, pin_factory=pin_factory)
            self._devices.append(sck)
        except gpiozero.GPIOZeroError as exc:
            self.close()
            raise SensorError(
                f"cannot set up the {self._where}: {exc}; "
                "check the pin numbers and that nothing else uses them"
            ) from exc
        self._dout: _Pin = dout.pin
        self._sck: _Pin = sck.pin

    @property
    def shelf_id(self) -> str:
        """Return the shelf's name."""
        return self._shelf_id

    def read_grams(self) -> float:
        """Return the load in grams: the median raw reading, tared and scaled."""
        return (self.read_raw() - self.offset) / self.scale

    def read_raw(self) -> float:
        """Return the median of ``samples`` conversions, in ADC counts (for calibration)."""
        with self._lock:
            raw = statistics.median(self._convert() for _ in range(self.samples))
        if raw >= _RAW_MAX or raw <= _RAW_MIN:
            raise SensorError(
                f"the {self._where} reads {raw:.0f}, the limit of its range: "
                "check the load-cell wires (E+, E-, A+, A-) and that the shelf is not overloaded"
            )
        return float(raw)

    def close(self) -> None:
        """Release the pins."""
        for device in reversed(self._devices):
            device.close()
        self._devices.clear()

    def __enter__(self) -> Hx711Shelf:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def _convert(self) -> int:
        """Wait for a conversion and clock it out; return it as a signed integer."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self._dout.state:
            if time.monotonic() >= deadline:
                raise SensorError(
                    f"the {self._where} had no reading ready within {READY_TIMEOUT_S} s: "
                    "check its power (VCC, GND) and the DOUT and SCK wires"
                )
            time.sleep(READY_POLL_S)
        value = 0
        for _ in range(DATA_BITS):
            self._sck.state = True
            value = (value << 1) | bool(self._dout.state)  # the bit is valid 0.1 µs after SCK rises
            self._sck.state = False
        for _ in range(GAIN_PULSES):
            self._sck.state = True
            self._sck.state = False
        if value > _RAW_MAX:
            value -= 1 << DATA_BITS
        return value


class SimulatedShelf:
    """A shelf whose load is set by hand, with optional seeded Gaussian noise."""

    def __init__(
        self, shelf_id: str, grams: float = 0.0, *, noise_g: float = 0.0, seed: int | None = None
    ) -> None:
        if noise_g < 0:
            raise ValueError(f"noise must be at least 0 g, not {noise_g}")
        self._shelf_id = shelf_id
        self._grams = grams
        self._noise_g = noise_g
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def shelf_id(self) -> str:
        """Return the shelf's name."""
        return self._shelf_id

    def read_grams(self) -> float:
        """Return the load, plus noise if any."""
        with self._lock:
            if not self._noise_g:
                return self._grams
            return self._grams + self._random.gauss(0.0, self._noise_g)

    def put(self, grams: float) -> None:
        """Put ``grams`` more on the shelf."""
        if grams < 0:
            raise ValueError(f"cannot put a negative weight ({grams} g) on shelf {self._shelf_id}")
        with self._lock:
            self._grams += grams

    def take(self, grams: float) -> None:
        """Take ``grams`` off the shelf."""
        if grams < 0:
            raise ValueError(f"cannot take a negative weight ({grams} g) from shelf {self._shelf_id}")
        with self._lock:
            if grams > self._grams + _ROUNDING_G:
                raise ValueError(
                    f"cannot take {grams} g from shelf {self._shelf_id}: it holds {self._grams} g"
                )
            self._grams = max(self._grams - grams, 0.0)

    def set(self, grams: float) -> None:
        """Set the load on the shelf."""
        with self._lock:
            self._grams = grams
