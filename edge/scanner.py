"""The barcode-scanner line grammar.

USB scanners act as keyboards: they type the code and press Enter. One line is one scan::

    line   = [sign] code
    sign   = "+" | "-"          "+" or nothing: one unit put in; "-": one unit taken out
    code   = 1*48 (DIGIT | ALPHA)

Spaces around a line are ignored, and so are empty lines and lines starting with "#" (comments in
files fed to the agent). Anything else is a :class:`ScanError` that says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import ScanError

_LINE = re.compile(r"^([+-]?)([0-9A-Za-z]{1,48})$")


@dataclass(frozen=True, slots=True)
class Scan:
    """One accepted scan: a product code and +1 (put in) or -1 (taken out)."""

    code: str
    delta: int


def parse_scan(line: str) -> Scan | None:
    """Parse one scanner line; return None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    match = _LINE.match(text)
    if match is None:
        raise ScanError(
            f"cannot read scan {text!r}: expected CODE, +CODE or -CODE with a code of 1-48 letters or digits"
        )
    sign, code = match.groups()
    return Scan(code=code, delta=-1 if sign == "-" else 1)
