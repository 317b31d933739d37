"""The DS18B20 driver against a fake sysfs 1-Wire folder, and the simulated probe."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.errors import SensorError
from edge.sensors.thermometer import (
    CRC_RETRIES,
    Ds18b20Thermometer,
    SimulatedThermometer,
    find_probes,
    parse_w1_slave,
)

PROBE = "28-01193a4f6d2c"


def w1_slave(
    millidegrees: int, *, crc_ok: bool = True, scratchpad: str = "72 01 4b 46 7f ff 0e 10 57"
) -> str:
    """Return what the kernel's w1-therm driver prints for one conversion."""
    return f"{scratchpad} : crc=57 {'YES' if crc_ok else 'NO'}\n{scratchpad} t={millidegrees}\n"


def add_probe(base: Path, probe: str, text: str | None = None) -> Path:
    folder = base / probe
    folder.mkdir(parents=True)
    if text is not None:
        (folder / "w1_slave").write_text(text)
    return folder


class ConversionsFifo:
    """A ``w1_slave`` that gives a new text on each read, as the kernel's does (one conversion per read).

    A FIFO served by a thread: each time the driver opens it, it reads the next text. Once the texts
    are used up it serves an unreadable one, so a driver that reads too often fails instead of hanging.
    The driver runs in this process, so /proc/self/fd shows when it has closed one read and the next
    text may be offered (offered earlier, it would be appended to the read still going on).
    """

    def __init__(self, path: Path, texts: list[str]) -> None:
        os.mkfifo(path)
        self.path = path
        self.served = 0
        self._texts = texts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                with open(self.path, "w") as fifo:  # blocks until the driver opens it
                    # The driver's open() returns a moment after ours: until it has, it could miss EOF.
                    self._wait(lambda: not self._open_elsewhere(fifo.fileno()))
                    if self._stop.is_set():
                        return
                    fifo.write(self._texts[self.served] if self.served < len(self._texts) else "used up\n")
                    self.served += 1
            except OSError:
                return
            self._wait(lambda: self._open_elsewhere(None))  # the driver is still reading this text

    def _wait(self, condition: Callable[[], bool]) -> None:
        while condition() and not self._stop.is_set():
            time.sleep(0.0002)

    def _open_elsewhere(self, own_fd: int | None) -> bool:
        """Return whether a file descriptor other than ``own_fd`` has the FIFO open."""
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # fds come and go meanwhile
                if int(fd) != own_fd and os.readlink(f"/proc/self/fd/{fd}") == str(self.path):
                    return True
        return False

    def stop(self) -> None:
        self._stop.set()
        # Open the read side once so that a pending open() for writing returns and sees the stop.
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread.join(timeout=5)
        os.close(reader)
        assert not self._thread.is_alive()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[list[ConversionsFifo]]:
    made: list[ConversionsFifo] = []
    yield made
    for each in made:
        each.stop()


def conversions(made: list[ConversionsFifo], base: Path, texts: list[str]) -> ConversionsFifo:
    fake = ConversionsFifo(add_probe(base, PROBE) / "w1_slave", texts)
    made.append(fake)
    return fake


@pytest.mark.parametrize(
    ("millidegrees", "celsius"), [(23125, 23.125), (4000, 4.0), (0, 0.0), (-18062, -18.062), (-55000, -55.0)]
)
def test_reads_the_temperature(tmp_path: Path, millidegrees: int, celsius: float) -> None:
    add_probe(tmp_path, PROBE, w1_slave(millidegrees))
    probe = Ds18b20Thermometer(PROBE, base=tmp_path)
    assert probe.sensor_id == PROBE
    assert probe.read_celsius() == celsius


def test_picks_the_only_probe(tmp_path: Path) -> None:
    add_probe(tmp_path, PROBE, w1_slave(5500))
    add_probe(tmp_path, "00-400000000000")  # another 1-Wire family: not a DS18B20
    (tmp_path / "w1_bus_master1").mkdir()
    probe = Ds18b20Thermometer(base=tmp_path)
    assert probe.sensor_id == PROBE
    assert probe.read_celsius() == 5.5


def test_no_probe_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "w1_bus_master1").mkdir()
    with pytest.raises(SensorError, match=f"no DS18B20 probe under {tmp_path}: .*dtoverlay=w1-gpio"):
        Ds18b20Thermometer(base=tmp_path)


def test_several_probes_are_an_error_listing_them(tmp_path: Path) -> None:
    add_probe(tmp_path, "28-0000000000bb", w1_slave(1000))
    add_probe(tmp_path, "28-0000000000aa", w1_slave(2000))
    with pytest.raises(
        SensorError, match=r"2 DS18B20 probes .*\(28-0000000000aa, 28-0000000000bb\): say which"
    ):
        Ds18b20Thermometer(base=tmp_path)
    assert find_probes(tmp_path) == ["28-0000000000aa", "28-0000000000bb"]
    assert Ds18b20Thermometer("28-0000000000bb", base=tmp_path).read_celsius() == 1.0


def test_a_missing_probe_is_an_error_saying_what_to_check(tmp_path: Path) -> None:
    probe = Ds18b20Thermometer(PROBE, base=tmp_path)  # named probes are looked for when read
    with pytest.raises(SensorError, match=f"{PROBE} is not on the 1-Wire bus .*check its wiring"):
        probe.read_celsius()


def test_a_crc_failure_is_read_again(tmp_path: Path, fifo: list[ConversionsFifo]) -> None:
    fake = conversions(fifo, tmp_path, [w1_slave(9999, crc_ok=False)] * CRC_RETRIES + [w1_slave(4250)])
    assert Ds18b20Thermometer(PROBE, base=tmp_path).read_celsius() == 4.25
    assert fake.served == 1 + CRC_RETRIES


def test_gives_up_after_the_retries(tmp_path: Path, fifo: list[ConversionsFifo]) -> None:
    fake = conversions(fifo, tmp_path, [w1_slave(4250, crc_ok=False)] * (1 + CRC_RETRIES) + [w1_slave(4250)])
    with pytest.raises(SensorError, match=f"no good reading in {1 + CRC_RETRIES} tries, last: CRC mismatch"):
        Ds18b20Thermometer(PROBE, base=tmp_path).read_celsius()
    assert fake.served == 1 + CRC_RETRIES


def test_the_power_on_value_is_an_error_not_85_degrees(tmp_path: Path, fifo: list[ConversionsFifo]) -> None:
    conversions(fifo, tmp_path, [w1_slave(85000)] * (1 + CRC_RETRIES))
    with pytest.raises(SensorError, match="85 °C power-on value"):
        Ds18b20Thermometer(PROBE, base=tmp_path).read_celsius()


def test_the_power_on_value_once_is_read_again(tmp_path: Path, fifo: list[ConversionsFifo]) -> None:
    conversions(fifo, tmp_path, [w1_slave(85000), w1_slave(3875)])
    assert Ds18b20Thermometer(PROBE, base=tmp_path).read_celsius() == 3.875


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "incomplete output"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "incomplete output"),
        (w1_slave(4000, crc_ok=False), "CRC mismatch"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", "no temperature"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=12a\n", "no temperature"),
        (w1_slave(0, scratchpad="00 00 00 00 00 00 00 00 00"), "all-zero scratchpad"),
        (w1_slave(85000), "85 °C power-on value"),
    ],
)
def test_bad_outputs_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_w1_slave(text)


def test_simulated_thermometer_reads_what_was_set() -> None:
    probe = SimulatedThermometer("fridge", 4.0)
    assert probe.sensor_id == "fridge"
    assert probe.read_celsius() == 4.0
    probe.set(-18.5)
    assert probe.read_celsius() == -18.5
