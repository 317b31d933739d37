"""Barcode scanners: a text stream (stdin), a Linux input device (evdev), and a simulated one.

USB scanners are keyboards: they type the code and press Enter. On the Pi the agent reads the scanner's
input device directly and grabs it, so scans never land on a console login prompt; :class:`KeyDecoder`
turns its key events back into lines. The line grammar itself is :mod:`edge.scangrammar`'s business.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Protocol, TextIO

from edge.errors import SensorError

log = logging.getLogger(__name__)

# A scanner that never sends Enter would grow the line forever; anything past this is dropped, and the
# line is still rejected by the grammar because it is longer than the longest valid scan (49 characters).
MAX_LINE_CHARS = 256

# Typed for a key the decoder has no character for (Tab, F1, ...), so that a code with a stray key in it
# fails the grammar instead of silently turning into another valid code.
UNKNOWN_KEY = "\ufffd"

# Linux input event types and key values (linux/input-event-codes.h); numbers, so decoding needs no evdev.
EV_KEY = 1
KEY_RELEASED = 0
KEY_PRESSED = 1
KEY_REPEATED = 2

KEY_ENTER = 28
KEY_KPENTER = 96
_SHIFT_KEYS = frozenset({42, 54})  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
# Ctrl, Alt, Meta and the lock keys type nothing. Caps Lock and Num Lock are ignored too: the device is
# grabbed, so no console keeps their state, and scanners press Shift for capitals.
_SILENT_KEYS = frozenset({29, 97, 56, 100, 125, 126, 58, 69, 70})

# US layout, which scanners use unless configured otherwise: code -> (plain, with Shift).
_KEYMAP: dict[int, tuple[str, str]] = {
    **{
        2 + i: (digit, shifted)
        for i, (digit, shifted) in enumerate(zip("1234567890", "!@#$%^&*()", strict=True))
    },
    **{16 + i: (letter, letter.upper()) for i, letter in enumerate("qwertyuiop")},
    **{30 + i: (letter, letter.upper()) for i, letter in enumerate("asdfghjkl")},
    **{44 + i: (letter, letter.upper()) for i, letter in enumerate("zxcvbnm")},
    12: ("-", "_"),
    13: ("=", "+"),
    26: ("[", "{"),
    27: ("]", "}"),
    39: (";", ":"),
    40: ("'", '"'),
    41: ("`", "~"),
    43: ("\\", "|"),
    51: (",", "<"),
    52: (".", ">"),
    53: ("/", "?"),
    57: (" ", " "),
    # The keypad types the same with or without Shift.
    **{
        code: (char, char)
        for code, char in zip((71, 72, 73, 75, 76, 77, 79, 80, 81, 82), "7894561230", strict=True)
    },
    74: ("-", "-"),
    78: ("+", "+"),
    55: ("*", "*"),
    98: ("/", "/"),
    83: (".", "."),
}


class KeyDecoder:
    """Turn a keyboard's (type, code, value) input events into typed lines."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._shifts_held: set[int] = set()

    def feed(self, event_type: int, code: int, value: int) -> str | None:
        """Take one input event; return the line when it is Enter, else None."""
        if event_type != EV_KEY:
            return None  # EV_SYN, EV_MSC scan codes, LEDs: not keys
        if code in _SHIFT_KEYS:
            if value == KEY_RELEASED:
                self._shifts_held.discard(code)
            else:
                self._shifts_held.add(code)
            return None
        if value == KEY_RELEASED:
            return None
        if code in (KEY_ENTER, KEY_KPENTER):
            line = "".join(self._chars)
            self._chars.clear()
            return line
        if code in _SILENT_KEYS:
            return None
        if len(self._chars) < MAX_LINE_CHARS:
            plain, shifted = _KEYMAP.get(code, (UNKNOWN_KEY, UNKNOWN_KEY))
            self._chars.append(shifted if self._shifts_held else plain)
        return None


class StdinScanner:
    """A scanner that is a text stream: one line per scan (stdin, a pipe, a file)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._closed = False

    def lines(self) -> Iterator[str]:
        """Yield each line without its line ending; end at end of stream or once closed."""
        while not self._closed:
            line = self._stream.readline()
            if not line or self._closed:
                return
            yield line.rstrip("\r\n")

    def close(self) -> None:
        """Stop after the line being read; the stream stays open (its owner closes it)."""
        # A read already blocked on the stream cannot be interrupted portably; it ends at the next line.
        self._closed = True


class _InputEvent(Protocol):
    type: int
    code: int
    value: int


class _InputDevice(Protocol):
    """The part of ``evdev.InputDevice`` the scanner uses."""

    fd: int

    def read(self) -> Iterable[_InputEvent]: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...


def _open_device(path: str) -> _InputDevice:
    """Open and grab an input device with python-evdev."""
    try:
        import evdev
    except ImportError as exc:
        raise SensorError(
            f"cannot read the barcode scanner {path}: python-evdev is not installed; "
            "install the Raspberry Pi extra: pip install 'frigo[pi]'"
        ) from exc
    try:
        device: _InputDevice = evdev.InputDevice(path)
    except OSError as exc:
        raise SensorError(
            f"cannot open the barcode scanner {path}: {exc.strerror or exc}; check the path "
            "(ls -l /dev/input/by-id/) and that the agent's user may read it (group 'input')"
        ) from exc
    try:
        device.grab()
    except OSError as exc:
        device.close()
        raise SensorError(
            f"cannot grab the barcode scanner {path}: {exc.strerror or exc}; "
            "is another program (a second agent?) reading it?"
        ) from exc
    return device


class EvdevScanner:
    """A USB barcode scanner read as a Linux input device, grabbed so its keys reach no console."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._device = _open_device(self._path)
        self._fd = self._device.fd
        self._decoder = KeyDecoder()
        # Guards the device and the flags; the select() in lines() runs outside it.
        self._lock = threading.Lock()
        self._closed = False
        self._readers = 0
        # close() writes to this pipe to wake a lines() blocked in select().
        self._wake_r, self._wake_w = os.pipe()

    def lines(self) -> Iterator[str]:
        """Yield each scanned line; end when the device is unplugged or the scanner is closed."""
        with self._lock:
            if self._closed:
                return
            self._readers += 1
        try:
            while True:
                # If close() shut the device meanwhile, select fails or the wake pipe ends it; either way
                # the check below ends the loop.
                with suppress(OSError, ValueError):
                    select.select([self._fd, self._wake_r], [], [])
                with self._lock:
                    if self._closed:
                        return
                    try:
                        events = [(event.type, event.code, event.value) for event in self._device.read()]
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        level = logging.WARNING if exc.errno == errno.ENODEV else logging.ERROR
                        log.log(level, "barcode scanner %s stopped: %s", self._path, exc)
                        self._shut()
                        return
                for event in events:
                    line = self._decoder.feed(*event)
                    if line is not None:
                        yield line
        finally:
            with self._lock:
                self._readers -= 1
                if self._closed and not self._readers:
                    self._close_pipe()

    def close(self) -> None:
        """Release the device; a ``lines()`` blocked in another thread ends."""
        with self._lock:
            if self._closed:
                return
            os.write(self._wake_w, b"\0")
            self._shut()
            if not self._readers:
                self._close_pipe()

    def __enter__(self) -> EvdevScanner:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def _shut(self) -> None:
        """Ungrab and close the device; the caller holds the lock."""
        self._closed = True
        with suppress(OSError):  # an unplugged device is no longer grabbed
            self._device.ungrab()
        self._device.close()

    def _close_pipe(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


class SimulatedScanner:
    """A scanner that yields the lines typed into it with :meth:`type`, from any thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False

    def type(self, line: str) -> None:
        """Scan one line, as a scanner would type it before pressing Enter."""
        if "\n" in line or "\r" in line:
            raise ValueError(f"type one line at a time, not {line!r}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the simulated scanner is closed")
            self._queue.put(line)

    def lines(self) -> Iterator[str]:
        """Yield the typed lines in order; end once closed and every typed line is yielded."""
        while True:
            line = self._queue.get()
            if line is None:
                self._queue.put(None)  # so that any other reader ends too
                return
            yield line

    def close(self) -> None:
        """End ``lines()`` after the lines already typed."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
