"""Barcode scanners: key events decoded into lines, the evdev reader, stdin and the simulated scanner."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.errors import ScanError, SensorError
from edge.scangrammar import Scan, parse_scan
from edge.sensors.scanner import (
    MAX_LINE_CHARS,
    UNKNOWN_KEY,
    EvdevScanner,
    KeyDecoder,
    SimulatedScanner,
    StdinScanner,
)

# Linux input event codes (linux/input-event-codes.h), written out here rather than taken from the module.
EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
MSC_SCAN = 4
UP, DOWN, REPEAT = 0, 1, 2
KEY_ENTER, KEY_KPENTER = 28, 96
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTCTRL, KEY_CAPSLOCK = 42, 54, 29, 58
KEY_TAB, KEY_F1 = 15, 59
KEY_MINUS, KEY_EQUAL, KEY_DOT, KEY_SPACE = 12, 13, 52, 57
DIGITS = {"1": 2, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7, "7": 8, "8": 9, "9": 10, "0": 11}
LETTERS = {
    **{c: 16 + i for i, c in enumerate("qwertyuiop")},
    **{c: 30 + i for i, c in enumerate("asdfghjkl")},
    **{c: 44 + i for i, c in enumerate("zxcvbnm")},
}
KEYPAD = {
    "7": 71,
    "8": 72,
    "9": 73,
    "-": 74,
    "4": 75,
    "5": 76,
    "6": 77,
    "+": 78,
    "1": 79,
    "2": 80,
    "3": 81,
    "0": 82,
}

Event = tuple[int, int, int]


def press(code: int, value: int = DOWN) -> list[Event]:
    """One key event the way the kernel reports it: scan code, key, sync."""
    return [(EV_MSC, MSC_SCAN, 0x70000 + code), (EV_KEY, code, value), (EV_SYN, 0, 0)]


def tap(code: int) -> list[Event]:
    return press(code, DOWN) + press(code, UP)


def typed(text: str, *, enter: int = KEY_ENTER, shift: int = KEY_LEFTSHIFT) -> list[Event]:
    """The events a US-layout USB scanner sends to type ``text`` and press Enter."""
    events: list[Event] = []
    for char in text:
        if char in DIGITS:
            events += tap(DIGITS[char])
        elif char == "-":
            events += tap(KEY_MINUS)
        elif char == " ":
            events += tap(KEY_SPACE)
        elif char.lower() in LETTERS and char.islower():
            events += tap(LETTERS[char])
        else:
            code = KEY_EQUAL if char == "+" else LETTERS[char.lower()]
            events += press(shift, DOWN) + tap(code) + press(shift, UP)
    return events + tap(enter)


def decode(events: list[Event]) -> list[str]:
    decoder = KeyDecoder()
    return [line for event in events if (line := decoder.feed(*event)) is not None]


@pytest.mark.parametrize("text", ["4006381333931", "96385074", "+4006381333931", "-4006381333931", "7"])
def test_decodes_scans_typed_like_a_usb_scanner(text: str) -> None:
    assert decode(typed(text)) == [text]


def test_shift_makes_capitals_and_plus() -> None:
    assert decode(typed("+AbC123xYz")) == ["+AbC123xYz"]
    assert decode(typed("+QWERTY-", shift=KEY_RIGHTSHIFT)) == ["+QWERTY-"]


def test_shift_held_over_several_keys_and_released() -> None:
    events = press(KEY_LEFTSHIFT) + tap(LETTERS["a"]) + tap(LETTERS["b"]) + tap(KEY_EQUAL)
    events += press(KEY_LEFTSHIFT, UP) + tap(LETTERS["c"]) + tap(KEY_EQUAL) + tap(KEY_ENTER)
    assert decode(events) == ["AB+c="]


def test_both_shifts_must_be_released() -> None:
    events = press(KEY_LEFTSHIFT) + press(KEY_RIGHTSHIFT) + press(KEY_LEFTSHIFT, UP) + tap(LETTERS["a"])
    events += press(KEY_RIGHTSHIFT, UP) + tap(LETTERS["a"]) + tap(KEY_ENTER)
    assert decode(events) == ["Aa"]


def test_keypad_digits_signs_and_enter() -> None:
    events = [event for char in "+1234567890-" for event in tap(KEYPAD[char])] + tap(KEY_KPENTER)
    assert decode(events) == ["+1234567890-"]


def test_lines_follow_each_other_and_a_bare_enter_is_an_empty_line() -> None:
    events = typed("4006381333931") + tap(KEY_ENTER) + typed("-96385074", enter=KEY_KPENTER)
    assert decode(events) == ["4006381333931", "", "-96385074"]
    assert [parse_scan(line) for line in decode(events)] == [
        Scan("4006381333931", 1),
        None,
        Scan("96385074", -1),
    ]


def test_words_and_spaces_are_typed() -> None:
    assert decode(typed("discard 4006381333931 expired")) == ["discard 4006381333931 expired"]


def test_only_key_presses_type() -> None:
    decoder = KeyDecoder()
    assert decoder.feed(EV_MSC, MSC_SCAN, LETTERS["a"]) is None
    assert decoder.feed(EV_SYN, LETTERS["b"], DOWN) is None
    assert decoder.feed(EV_KEY, LETTERS["c"], UP) is None
    assert decoder.feed(EV_KEY, KEY_ENTER, UP) is None
    assert decoder.feed(EV_KEY, KEY_ENTER, DOWN) == ""


def test_an_autorepeated_key_types_again() -> None:
    events = press(DIGITS["1"]) + press(DIGITS["1"], REPEAT) + press(DIGITS["1"], UP) + tap(KEY_ENTER)
    assert decode(events) == ["11"]


def test_modifiers_and_lock_keys_type_nothing() -> None:
    events = tap(KEY_CAPSLOCK) + press(KEY_LEFTCTRL) + tap(DIGITS["4"]) + press(KEY_LEFTCTRL, UP)
    events += tap(LETTERS["x"]) + tap(KEY_ENTER)
    assert decode(events) == ["4x"]


@pytest.mark.parametrize("stray", [KEY_TAB, KEY_F1, 200])
def test_a_key_without_a_character_spoils_the_line(stray: int) -> None:
    events = typed("12")[:-6] + tap(stray) + typed("34")
    [line] = decode(events)
    assert line == f"12{UNKNOWN_KEY}34"
    with pytest.raises(ScanError):
        parse_scan(line)


def test_punctuation_is_typed_so_the_grammar_rejects_it() -> None:
    [line] = decode(typed("12")[:-6] + tap(KEY_DOT) + typed("5"))
    assert line == "12.5"
    with pytest.raises(ScanError):
        parse_scan(line)


def test_an_endless_line_is_capped_and_still_rejected() -> None:
    [line] = decode(typed("1" * (MAX_LINE_CHARS + 100)))
    assert line == "1" * MAX_LINE_CHARS
    with pytest.raises(ScanError):
        parse_scan(line)
    assert decode(typed("1" * (MAX_LINE_CHARS + 100)) + typed("42")) == ["1" * MAX_LINE_CHARS, "42"]


# The evdev scanner, on a fake python-evdev whose device is a pipe the test writes events into.


@dataclass(frozen=True)
class InputEvent:
    type: int
    code: int
    value: int


class FakeInputDevice:
    """An ``evdev.InputDevice`` whose file descriptor is a pipe: readable when events are queued."""

    def __init__(self) -> None:
        self.fd, self._write_end = os.pipe()
        os.set_blocking(self.fd, False)
        self._events: deque[InputEvent] = deque()
        self._lock = threading.Lock()
        self.grabbed = False
        self.closed = False
        self.unplugged = False

    def send(self, events: list[Event]) -> None:
        with self._lock:
            self._events.extend(InputEvent(*event) for event in events)
        os.write(self._write_end, b"\0")

    def unplug(self) -> None:
        self.unplugged = True
        os.write(self._write_end, b"\0")

    def read(self) -> Iterator[InputEvent]:
        # Like evdev's, a generator: BlockingIOError or ENODEV come when it is first iterated.
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        with contextlib.suppress(BlockingIOError):  # nothing queued since the last read
            os.read(self.fd, 4096)
        with self._lock:
            if not self._events:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            events = list(self._events)
            self._events.clear()
        yield from events

    def grab(self) -> None:
        if self.grabbed:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self) -> None:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def close(self) -> None:
        # Only the device's own descriptor: closing it does not wake a select() waiting on it, just as
        # with a real device. The test's end of the pipe stays open until the fixture disposes of it.
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def dispose(self) -> None:
        self.close()
        os.close(self._write_end)


@pytest.fixture
def devices(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeInputDevice]]:
    """Fake input devices by path, served by a fake ``evdev`` module."""
    by_path: dict[str, FakeInputDevice] = {}

    def input_device(path: str) -> FakeInputDevice:
        if path not in by_path:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return by_path[path]

    fake = types.ModuleType("evdev")
    fake.InputDevice = input_device  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "evdev", fake)
    yield by_path
    for device in by_path.values():
        device.dispose()


SCANNER = "/dev/input/by-id/usb-scanner-event-kbd"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_evdev_scanner_grabs_reads_lines_and_close_ends_a_blocked_read(
    devices: dict[str, FakeInputDevice],
) -> None:
    fds = open_fds()
    device = devices[SCANNER] = FakeInputDevice()
    scanner = EvdevScanner(Path(SCANNER))
    assert device.grabbed
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(scanner.lines()), daemon=True)
    reader.start()
    device.send(typed("+4006381333931"))
    device.send(typed("-96385074")[:10])
    device.send(typed("-96385074")[10:])
    assert eventually(lambda: len(lines) == 2)
    scanner.close()
    reader.join(timeout=2)
    assert not reader.is_alive()
    assert lines == ["+4006381333931", "-96385074"]
    assert not device.grabbed
    assert device.closed
    assert open_fds() == fds + 1  # the wake-up pipe is closed too; the test's end of the fake is open
    scanner.close()
    assert list(scanner.lines()) == []


def test_evdev_scanner_ends_when_the_device_is_unplugged(devices: dict[str, FakeInputDevice]) -> None:
    fds = open_fds()
    device = devices[SCANNER] = FakeInputDevice()
    scanner = EvdevScanner(SCANNER)
    lines = scanner.lines()
    device.send(typed("123"))
    assert next(lines) == "123"
    device.unplug()
    assert list(lines) == []
    assert device.closed
    scanner.close()
    assert open_fds() == fds + 1  # the test's end of the fake device


def test_evdev_scanner_closed_from_its_own_loop(devices: dict[str, FakeInputDevice]) -> None:
    fds = open_fds()
    device = devices[SCANNER] = FakeInputDevice()
    scanner = EvdevScanner(SCANNER)
    device.send(typed("1") + typed("2"))
    seen = []
    for line in scanner.lines():
        seen.append(line)
        scanner.close()
    assert seen == ["1", "2"]  # events read before the close are still decoded
    assert device.closed
    assert open_fds() == fds + 1  # the test's end of the fake device


def test_evdev_scanner_that_cannot_be_opened(devices: dict[str, FakeInputDevice]) -> None:
    with pytest.raises(
        SensorError, match=r"cannot open the barcode scanner /dev/input/nope: .*check the path"
    ):
        EvdevScanner("/dev/input/nope")


def test_evdev_scanner_held_by_another_program(devices: dict[str, FakeInputDevice]) -> None:
    device = devices[SCANNER] = FakeInputDevice()
    device.grab()
    with pytest.raises(SensorError, match=r"cannot grab the barcode scanner .*another program"):
        EvdevScanner(SCANNER)
    assert device.closed


def test_evdev_scanner_without_python_evdev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "evdev", None)  # what an absent package looks like to import
    with pytest.raises(SensorError, match=r"python-evdev is not installed; .*pip install 'frigo\[pi\]'"):
        EvdevScanner(SCANNER)


# Stdin and the simulated scanner.


def test_stdin_scanner_yields_lines_without_their_ending() -> None:
    scanner = StdinScanner(io.StringIO("4006381333931\n+ABC\r\n\n  -9 \n#note\n7"))
    assert list(scanner.lines()) == ["4006381333931", "+ABC", "", "  -9 ", "#note", "7"]


def test_stdin_scanner_stops_once_closed() -> None:
    stream = io.StringIO("1\n2\n3\n")
    scanner = StdinScanner(stream)
    lines = scanner.lines()
    assert next(lines) == "1"
    scanner.close()
    assert list(lines) == []
    assert not stream.closed


def read_in_thread(scanner: SimulatedScanner) -> tuple[threading.Thread, list[str]]:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(scanner.lines()), daemon=True)
    reader.start()
    return reader, lines


def test_simulated_scanner_yields_typed_lines_until_closed() -> None:
    scanner = SimulatedScanner()
    reader, lines = read_in_thread(scanner)
    scanner.type("+4006381333931")
    scanner.type("-4006381333931")
    scanner.type("")
    scanner.close()
    reader.join(timeout=2)
    assert not reader.is_alive()
    assert lines == ["+4006381333931", "-4006381333931", ""]
    again, more = read_in_thread(scanner)  # a later reader ends at once too
    again.join(timeout=2)
    assert not again.is_alive()
    assert more == []


def test_simulated_scanner_refuses_newlines_and_typing_after_close() -> None:
    scanner = SimulatedScanner()
    with pytest.raises(ValueError, match="one line at a time"):
        scanner.type("1\n2")
    scanner.close()
    scanner.close()
    with pytest.raises(RuntimeError, match="closed"):
        scanner.type("1")
