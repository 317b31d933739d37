"""Weight-shelf calibration: from raw ADC counts to grams, and where the numbers are kept.

A shelf reads ``grams = (raw - offset) / scale``. ``offset`` is the raw reading of the empty shelf (its
tare); ``scale`` is counts per gram, found by putting a known weight on it. Both are kept per shelf in
``calibration.json`` in the agent's data directory::

    {"fridge-top": {"offset": 8412.0, "scale": 412.57}}
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from edge.errors import SensorError, StorageError
from shared.files import replace_file

CALIBRATION_FILE = "calibration.json"

# Readings averaged (by median) at each step of `calibrate`; each is already a median of the driver's
# samples, so a few are enough to ride out a hand still touching the shelf.
CALIBRATION_READINGS = 5

# A known weight must move the reading by more than this many counts: several times the HX711's noise
# at gain 128 (tens of counts), and far less than any load cell gives for a calibration weight.
MIN_RAW_CHANGE = 200


class Calibration(NamedTuple):
    """A shelf's tare (raw counts) and scale (counts per gram)."""

    offset: float
    scale: float


def tare(raw_samples: Sequence[float]) -> float:
    """Return the offset of an empty shelf: the median of its raw readings."""
    if not raw_samples:
        raise ValueError("tare needs at least one raw reading of the empty shelf")
    return float(statistics.median(raw_samples))


def scale_from_known_weight(raw_samples: Sequence[float], offset: float, known_grams: float) -> float:
    """Return counts per gram from raw readings with ``known_grams`` on the tared shelf."""
    if not raw_samples:
        raise ValueError("the scale needs at least one raw reading with the known weight on the shelf")
    if not known_grams > 0:
        raise ValueError(f"the known weight must be more than 0 g, not {known_grams}")
    change = statistics.median(raw_samples) - offset
    if abs(change) <= MIN_RAW_CHANGE:
        raise SensorError(
            f"the shelf's reading moved by only {change:.0f} counts with {known_grams:g} g on it: check that "
            "the weight rests on the shelf alone and the load-cell wiring (E+, E-, A+, A-)"
        )
    # Negative when the load cell is mounted upside down; grams still come out positive.
    return float(change / known_grams)


def calibrate(
    shelf_reader: Callable[[], float],
    known_grams: float,
    prompt: Callable[[str], object],
    wait: Callable[[], object],
    *,
    readings: int = CALIBRATION_READINGS,
) -> Calibration:
    """Walk the user through taring a shelf and weighing a known load; return its (offset, scale).

    ``shelf_reader`` returns one raw reading (e.g. ``Hx711Shelf.read_raw``); ``prompt`` shows an
    instruction; ``wait`` returns when the user has done it (e.g. ``input``); what they return is ignored.
    """
    if not known_grams > 0:
        raise ValueError(f"the known weight must be more than 0 g, not {known_grams}")
    if readings < 1:
        raise ValueError(f"readings must be at least 1, not {readings}")
    prompt("Empty the shelf, then press Enter.")
    wait()
    offset = tare([shelf_reader() for _ in range(readings)])
    prompt(f"Put {known_grams:g} g on the shelf, then press Enter.")
    wait()
    scale = scale_from_known_weight([shelf_reader() for _ in range(readings)], offset, known_grams)
    return Calibration(offset=offset, scale=scale)


class CalibrationStore:
    """The calibration of every shelf, in one small JSON file replaced atomically on each save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> CalibrationStore:
        """Return the store kept in the agent's data directory."""
        return cls(data_dir / CALIBRATION_FILE)

    def load(self) -> dict[str, Calibration]:
        """Return every shelf's calibration; empty if nothing was calibrated yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(
                f"cannot read {self.path}: {exc.strerror or exc}; check the data directory"
            ) from exc
        try:
            return _parse(json.loads(text))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise SensorError(
                f"the calibration file {self.path} is not valid ({exc}): fix it, or delete it and run "
                "'frigo edge calibrate' for each shelf"
            ) from exc

    def get(self, shelf_id: str) -> Calibration | None:
        """Return one shelf's calibration, or None if it was never calibrated."""
        return self.load().get(shelf_id)

    def save(self, shelf_id: str, calibration: Calibration) -> None:
        """Store one shelf's calibration, keeping the others."""
        _check(shelf_id, calibration.offset, calibration.scale)
        shelves = self.load()
        shelves[shelf_id] = calibration
        text = json.dumps({name: c._asdict() for name, c in sorted(shelves.items())}, indent=2) + "\n"
        try:
            replace_file(self.path, text)
        except OSError as exc:
            raise StorageError(
                f"cannot write {self.path}: {exc.strerror or exc}; check the data directory"
            ) from exc


def _parse(document: object) -> dict[str, Calibration]:
    if not isinstance(document, dict):
        raise ValueError("expected an object of shelves")
    shelves: dict[str, Calibration] = {}
    for shelf_id, entry in document.items():
        if not isinstance(entry, dict) or set(entry) != {"offset", "scale"}:
            raise ValueError(f"shelf {shelf_id!r}: expected exactly offset and scale")
        offset, scale = entry["offset"], entry["scale"]
        if not all(
            isinstance(number, int | float) and not isinstance(number, bool) for number in (offset, scale)
        ):
            raise ValueError(f"shelf {shelf_id!r}: offset and scale must be numbers")
        _check(shelf_id, offset, scale)
        shelves[shelf_id] = Calibration(offset=float(offset), scale=float(scale))
    return shelves


def _check(shelf_id: str, offset: float, scale: float) -> None:
    if not (math.isfinite(offset) and math.isfinite(scale)) or scale == 0:
        raise ValueError(f"shelf {shelf_id!r}: offset must be finite and scale finite and not 0")
