"""GTIN check digits (GS1 General Specifications, section 7.9): the barcodes fridges scan."""

from __future__ import annotations


def _ascii_digits(text: str) -> bool:
    # str.isdigit() also accepts other scripts' digits and superscripts, which no barcode carries.
    return text.isascii() and text.isdigit()


def check_digit(body: str) -> int:
    """Return the check digit for the digits of a GTIN without its last digit."""
    if not _ascii_digits(body):
        raise ValueError(f"a GTIN has only digits, got {body!r}")
    # From the right, weights alternate 3, 1, 3, ...
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_valid(code: str) -> bool:
    """Return whether ``code`` is a GTIN-8, -12, -13 or -14 with a correct check digit."""
    return _ascii_digits(code) and len(code) in (8, 12, 13, 14) and check_digit(code[:-1]) == int(code[-1])


def make_gtin13(body12: str) -> str:
    """Return the GTIN-13 made of twelve digits and their check digit."""
    if len(body12) != 12:
        raise ValueError(f"a GTIN-13 body has 12 digits, got {len(body12)}")
    return body12 + str(check_digit(body12))
