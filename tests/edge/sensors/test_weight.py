"""The HX711 shelf driver against a fake HX711 on mock pins, and the simulated shelf."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from edge.errors import SensorError
from edge.sensors import weight
from edge.sensors.weight import Hx711Shelf, SimulatedShelf
from tests.edge.sensors.fake_hx711 import FakeHx711

DOUT, SCK = 5, 6


@pytest.fixture
def chip(factory: MockFactory) -> FakeHx711:
    return FakeHx711(factory, DOUT, SCK)


@pytest.fixture
def shelf(factory: MockFactory, chip: FakeHx711) -> Iterator[Hx711Shelf]:
    with Hx711Shelf("fridge-top", DOUT, SCK, scale=1.0, offset=0.0, pin_factory=factory, samples=1) as shelf:
        yield shelf


@pytest.mark.parametrize("raw", [0, 1, 12345, 0x5A5A5A, -1, -12345, -0x5A5A5A, (1 << 23) - 2, -(1 << 23) + 1])
def test_reads_a_conversion_as_signed_24_bits(shelf: Hx711Shelf, chip: FakeHx711, raw: int) -> None:
    chip.queue(raw)
    assert shelf.read_raw() == raw
    assert not chip.readings


def test_each_conversion_ends_with_one_pulse_for_channel_a_gain_128(
    factory: MockFactory, chip: FakeHx711
) -> None:
    chip.queue(10, 20, 30)
    with Hx711Shelf("s", DOUT, SCK, scale=1.0, offset=0.0, pin_factory=factory, samples=3) as shelf:
        shelf.read_raw()
    assert chip.gain_pulses == [1, 1, 1]
    assert chip.early_pulses == 0
    assert not chip.sck_high  # held high, the HX711 would power down


def test_grams_are_tared_and_scaled(factory: MockFactory, chip: FakeHx711) -> None:
    chip.queue(8_000 + 412 * 250)
    with Hx711Shelf("s", DOUT, SCK, scale=412.0, offset=8_000.0, pin_factory=factory, samples=1) as shelf:
        assert shelf.read_grams() == pytest.approx(250.0)
    chip.queue(8_000 - 412 * 3)
    with Hx711Shelf("s", DOUT, SCK, scale=412.0, offset=8_000.0, pin_factory=factory, samples=1) as shelf:
        assert shelf.read_grams() == pytest.approx(-3.0)


def test_the_median_of_the_samples_rejects_a_corrupt_conversion(
    factory: MockFactory, chip: FakeHx711
) -> None:
    chip.queue(1000, 4_000_000, 1004, -3_000_000, 1002)
    with Hx711Shelf("s", DOUT, SCK, scale=1.0, offset=0.0, pin_factory=factory, samples=5) as shelf:
        assert shelf.read_raw() == 1002
    assert not chip.readings


def test_waits_for_the_conversion_to_be_ready(
    shelf: Hx711Shelf, chip: FakeHx711, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weight, "READY_TIMEOUT_S", 0.05)
    with pytest.raises(SensorError, match=r"no reading ready within 0\.05 s: check its power") as info:
        shelf.read_raw()
    assert "shelf fridge-top (DOUT 5, SCK 6)" in str(info.value)
    assert chip.early_pulses == 0  # no clocking while DOUT was high
    chip.queue(77)
    assert shelf.read_raw() == 77


@pytest.mark.parametrize("raw", [(1 << 23) - 1, -(1 << 23)])
def test_a_reading_at_the_adc_limit_is_an_error(shelf: Hx711Shelf, chip: FakeHx711, raw: int) -> None:
    chip.queue(raw)
    with pytest.raises(SensorError, match="limit of its range: check the load-cell wires"):
        shelf.read_raw()


def test_pins_in_use_are_refused_and_released_on_close(factory: MockFactory, chip: FakeHx711) -> None:
    first = Hx711Shelf("a", DOUT, SCK, scale=1.0, offset=0.0, pin_factory=factory)
    with pytest.raises(SensorError, match=r"shelf b .*GPIO6 is already in use"):
        Hx711Shelf("b", 7, SCK, scale=1.0, offset=0.0, pin_factory=factory)
    first.close()
    # Both pins are free again, including the one the failed shelf had reserved before failing.
    with Hx711Shelf("b", DOUT, SCK, scale=1.0, offset=0.0, pin_factory=factory, samples=1) as second:
        chip.queue(5)
        assert second.read_raw() == 5
    with Hx711Shelf("c", 7, 8, scale=1.0, offset=0.0, pin_factory=factory):
        pass


def test_an_invalid_pin_is_a_sensor_error(factory: MockFactory) -> None:
    with pytest.raises(SensorError, match="99 is not a valid pin"):
        Hx711Shelf("s", 99, SCK, scale=1.0, offset=0.0, pin_factory=factory)


@pytest.mark.parametrize(("scale", "samples"), [(0.0, 3), (1.0, 0)])
def test_rejects_a_zero_scale_or_no_samples(factory: MockFactory, scale: float, samples: int) -> None:
    with pytest.raises(ValueError, match="must"):
        Hx711Shelf("s", DOUT, SCK, scale=scale, offset=0.0, pin_factory=factory, samples=samples)


def test_simulated_shelf_puts_takes_and_sets() -> None:
    shelf = SimulatedShelf("fridge-top")
    assert shelf.shelf_id == "fridge-top"
    assert shelf.read_grams() == 0.0
    shelf.put(500.0)
    shelf.put(0.1)
    shelf.take(0.1)
    shelf.take(200.0)
    assert shelf.read_grams() == pytest.approx(300.0)
    shelf.set(1234.5)
    assert shelf.read_grams() == 1234.5
    with pytest.raises(ValueError, match=r"holds 1234\.5 g"):
        shelf.take(2000.0)
    with pytest.raises(ValueError, match="negative"):
        shelf.put(-1.0)
    assert shelf.read_grams() == 1234.5


def test_simulated_shelf_take_all_after_rounding() -> None:
    shelf = SimulatedShelf("s")
    shelf.put(0.1)
    shelf.put(0.2)
    shelf.take(0.3)
    shelf.take(0.0)
    assert shelf.read_grams() == pytest.approx(0.0, abs=1e-9)


def test_simulated_shelf_noise_is_seeded() -> None:
    def readings(seed: int) -> list[float]:
        shelf = SimulatedShelf("s", 1000.0, noise_g=2.0, seed=seed)
        return [shelf.read_grams() for _ in range(200)]

    first = readings(7)
    assert first == readings(7)
    assert first != readings(8)
    assert len(set(first)) == len(first)
    assert sum(first) / len(first) == pytest.approx(1000.0, abs=1.0)
    assert all(990 < grams < 1010 for grams in first)
