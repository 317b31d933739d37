"""The scanner line grammar: what a barcode scanner (or a person at a keyboard) types.

USB scanners act as keyboards: they type the code and press Enter. One line is one action::

    line     = [sign] gtin                    a scan
             | "open" SP gtin                 open the next lot of a product
             | "discard" SP gtin [SP reason]  throw a lot away (reason: expired, spoiled, other)
             | "move" SP gtin SP location     move a lot (location: fridge, freezer, door)
    sign     = "+" | "-"      "+" or nothing: one unit put in; "-": one unit taken out and used
    gtin     = 8, 12, 13 or 14 digits with a valid GS1 check digit

Spaces around a line are ignored, and so are empty lines and lines starting with "#" (comments in
files fed to the agent). Anything else is a :class:`ScanError` that says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from edge.errors import ScanError
from shared import gtin
from shared.messages import Location

DiscardReason = Literal["expired", "spoiled", "other"]
_SCAN = re.compile(r"^([+-]?)(\S+)$")


@dataclass(frozen=True, slots=True)
class Scan:
    """Put one unit in (+1) or take one out (-1)."""

    code: str
    delta: int


@dataclass(frozen=True, slots=True)
class Open:
    """Open the next lot of a product."""

    code: str


@dataclass(frozen=True, slots=True)
class Discard:
    """Throw the next lot of a product away."""

    code: str
    reason: DiscardReason


@dataclass(frozen=True, slots=True)
class Move:
    """Move the next lot of a product to another compartment."""

    code: str
    location: Location


Action = Scan | Open | Discard | Move


def check_code(code: str) -> str:
    """Return ``code`` if it is a valid GTIN, else raise :class:`ScanError` saying why."""
    if not (code.isascii() and code.isdigit()):
        raise ScanError(f"cannot read {code!r}: a product code is 8, 12, 13 or 14 digits (GTIN)")
    if len(code) not in (8, 12, 13, 14):
        raise ScanError(f"{code} has {len(code)} digits: a GTIN has 8, 12, 13 or 14; scan it again")
    if not gtin.is_valid(code):
        expected = gtin.check_digit(code[:-1])
        raise ScanError(f"{code} fails its check digit (expected {expected} at the end): scan it again")
    return code


def parse_scan(line: str) -> Action | None:
    """Parse one line; return None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    words = text.split()
    verb = words[0].lower()
    if verb == "open" and len(words) == 2:
        return Open(check_code(words[1]))
    if verb == "discard" and len(words) in (2, 3):
        reason = words[2].lower() if len(words) == 3 else "other"
        if reason not in get_args(DiscardReason):
            raise ScanError(f"unknown discard reason {reason!r}: use expired, spoiled or other")
        return Discard(check_code(words[1]), reason)  # type: ignore[arg-type]
    if verb == "move" and len(words) == 3:
        location = words[2].lower()
        if location not in get_args(Location):
            raise ScanError(f"unknown location {location!r}: use fridge, freezer or door")
        return Move(check_code(words[1]), location)  # type: ignore[arg-type]
    match = _SCAN.match(text)
    if match is None:
        raise ScanError(
            f"cannot read {text!r}: expected CODE, +CODE, -CODE, 'open CODE', 'discard CODE [reason]' "
            "or 'move CODE LOCATION'"
        )
    sign, code = match.groups()
    return Scan(code=check_code(code), delta=-1 if sign == "-" else 1)
