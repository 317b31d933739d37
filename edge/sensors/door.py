"""The door switch: a reed switch on a GPIO pin, and a simulated door.

The reed switch sits on the frame, its magnet on the door: a closed door closes the switch, which pulls
the pin away from the level its internal pull resistor holds it at. With ``open_when_high`` (the usual
wiring: switch between the pin and GND, pull-up) an open door reads high; otherwise (switch to 3.3 V,
pull-down) it reads low. Either way, an unplugged switch reads "open", which is the safe guess.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from edge.errors import SensorError

if TYPE_CHECKING:
    from gpiozero import Factory


def _import_gpiozero(what: str) -> Any:  # gpiozero has no type hints
    try:
        import gpiozero
    except ImportError as exc:
        raise SensorError(
            f"cannot use {what}: gpiozero is not installed; "
            "install the Raspberry Pi extra: pip install 'frigo[pi]'"
        ) from exc
    return gpiozero


class GpioDoor:
    """A reed switch on a GPIO pin, using the Pi's internal pull resistor."""

    def __init__(
        self, pin: int | str, *, pin_factory: Factory | None = None, open_when_high: bool = True
    ) -> None:
        self._where = f"door switch on GPIO pin {pin}"
        gpiozero = _import_gpiozero(f"the {self._where}")
        self._errors: type[Exception] = gpiozero.GPIOZeroError
        try:
            # gpiozero calls the switch "active" when it is closed, i.e. when the door is closed.
            self._switch = gpiozero.DigitalInputDevice(pin, pull_up=open_when_high, pin_factory=pin_factory)
        except gpiozero.GPIOZeroError as exc:
            raise SensorError(
                f"cannot set up the {self._where}: {exc}; check the pin number and that nothing else uses it"
            ) from exc

    def is_open(self) -> bool:
        """Return whether the door is open now."""
        try:
            return not self._switch.is_active
        except self._errors as exc:
            raise SensorError(f"cannot read the {self._where}: {exc}") from exc

    def close(self) -> None:
        """Release the pin (this does not close the door)."""
        self._switch.close()

    def __enter__(self) -> GpioDoor:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class SimulatedDoor:
    """A door opened and closed by hand."""

    def __init__(self, *, is_open: bool = False) -> None:
        self._open = is_open  # one bool, set and read atomically: no lock needed across threads

    def is_open(self) -> bool:
        """Return whether the door is open now."""
        return self._open

    def open(self) -> None:
        """Open the door."""
        self._open = True

    def close(self) -> None:
        """Close the door."""
        self._open = False
