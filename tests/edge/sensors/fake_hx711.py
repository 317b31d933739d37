"""A fake HX711 wired to two gpiozero mock pins, so the driver's bit-banging runs for real."""

from __future__ import annotations

from collections import deque

from gpiozero.pins.mock import MockFactory, MockPin

DATA_BITS = 24


class FakeHx711:
    """An HX711 that shifts out queued conversions on SCK's rising edges, most significant bit first.

    DOUT is low while a conversion is queued (data ready) and high otherwise. After the 24 data bits
    every further pulse counts towards the gain of the next conversion, as on the chip; the count for
    each conversion is kept in ``gain_pulses``.
    """

    def __init__(self, factory: MockFactory, dout: int, sck: int) -> None:
        self.readings: deque[int] = deque()
        self.gain_pulses: list[int] = []
        self.early_pulses = 0  # SCK pulses while no conversion was ready: a driver bug
        self._pulses = 0
        self._word = 0
        self._sck_high = False
        # Created before the driver asks for them, the pins are these classes; the driver gets them back.
        factory.pin(dout, pin_class=_DoutPin, chip=self)
        factory.pin(sck, pin_class=_SckPin, chip=self)

    def queue(self, *raw: int) -> None:
        """Queue conversions, given as signed 24-bit values."""
        for value in raw:
            if not -(1 << 23) <= value < 1 << 23:
                raise ValueError(f"{value} does not fit in 24 bits")
            self.readings.append(value & 0xFFFFFF)

    @property
    def sck_high(self) -> bool:
        return self._sck_high

    def dout(self) -> bool:
        """Return DOUT's level now."""
        if self._pulses > DATA_BITS and not self._sck_high:
            self._pulses = 0  # the driver is waiting again: this conversion is over
        if self._pulses == 0:
            return not self.readings
        if self._pulses <= DATA_BITS:
            return bool(self._word >> (DATA_BITS - self._pulses) & 1)
        return True  # forced high after the 25th rising edge

    def sck(self, high: bool) -> None:
        """Take SCK's new level."""
        rising = high and not self._sck_high
        self._sck_high = high
        if not rising:
            return
        if self._pulses == 0:
            if not self.readings:
                self.early_pulses += 1
                return
            self._word = self.readings.popleft()
            self.gain_pulses.append(0)
        self._pulses += 1
        if self._pulses > DATA_BITS:
            self.gain_pulses[-1] += 1


class _DoutPin(MockPin):  # type: ignore[misc]  # gpiozero has no type hints
    def __init__(self, factory: MockFactory, info: object, chip: FakeHx711) -> None:
        super().__init__(factory, info)
        self.chip = chip

    def _get_state(self) -> bool:
        return self.chip.dout()


class _SckPin(MockPin):  # type: ignore[misc]  # gpiozero has no type hints
    def __init__(self, factory: MockFactory, info: object, chip: FakeHx711) -> None:
        super().__init__(factory, info)
        self.chip = chip

    def _set_state(self, value: bool) -> None:
        super()._set_state(value)
        self.chip.sck(bool(value))
