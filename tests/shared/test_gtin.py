"""GTIN check digits of shared.gtin, and the simulator catalog's codes."""

from __future__ import annotations

import pytest

from shared import gtin
from simulator.catalog import CATALOG

# Barcodes printed in GS1 documentation and on real packages.
KNOWN_VALID = [
    "4006381333931",  # GTIN-13 (EAN-13)
    "5901234123457",  # GTIN-13, the GS1 example
    "9780306406157",  # ISBN-13
    "96385074",  # GTIN-8
    "036000291452",  # UPC-A (GTIN-12)
    "012345678905",  # UPC-A
    "04006381333931",  # GTIN-14: leading zeros do not change the check digit
]


@pytest.mark.parametrize("code", KNOWN_VALID)
def test_known_codes_are_valid(code: str) -> None:
    assert gtin.is_valid(code)
    assert gtin.check_digit(code[:-1]) == int(code[-1])


@pytest.mark.parametrize(
    ("body", "digit"),
    [("400638133393", 1), ("590123412345", 7), ("9638507", 4), ("03600029145", 2), ("00000000000", 0)],
)
def test_check_digit(body: str, digit: int) -> None:
    assert gtin.check_digit(body) == digit


@pytest.mark.parametrize("body", ["", "12a", "12 3", "-123", "1.5"])
def test_check_digit_needs_digits(body: str) -> None:
    with pytest.raises(ValueError, match="only digits"):
        gtin.check_digit(body)


@pytest.mark.parametrize(
    "code", ["4006381333932", "4006381333930", "96385075", "036000291453", "04006381333932"]
)
def test_wrong_check_digit_is_invalid(code: str) -> None:
    assert not gtin.is_valid(code)


@pytest.mark.parametrize(
    "code",
    ["", "0", "1234565", "123456789", "1234567890", "12345678901", "400638133393100", "0" * 15],
)
def test_wrong_length_is_invalid(code: str) -> None:
    assert not gtin.is_valid(code)


def test_zero_padding_only_counts_for_allowed_lengths() -> None:
    # "0000000" + valid GTIN-8 body has a correct check digit but 15 digits.
    assert not gtin.is_valid("0000000" + "96385074")
    assert gtin.is_valid("000000" + "96385074")


@pytest.mark.parametrize(
    "code", ["400638133393A", "ABCDEFGH", "4006381 33931", " 4006381333931", "+96385074"]
)
def test_non_digits_are_invalid(code: str) -> None:
    assert not gtin.is_valid(code)


def test_non_ascii_digits_are_invalid() -> None:
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in "4006381333931")
    assert not gtin.is_valid(arabic_indic)


def test_superscript_digit_is_invalid_not_an_error() -> None:
    assert gtin.is_valid("1234567²") is False


def test_make_gtin13() -> None:
    assert gtin.make_gtin13("400638133393") == "4006381333931"
    assert gtin.make_gtin13("200000000001") == "2000000000015"
    assert gtin.is_valid(gtin.make_gtin13("123456789012"))


@pytest.mark.parametrize("body", ["", "40063813339", "4006381333931"])
def test_make_gtin13_needs_twelve_digits(body: str) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        gtin.make_gtin13(body)


def test_catalog_codes_are_valid_restricted_circulation_gtin13() -> None:
    assert len(CATALOG) >= 200
    for product in CATALOG:
        assert len(product.code) == 13, product
        assert product.code.startswith("2"), product
        assert gtin.is_valid(product.code), product
        assert product.max_units >= 1, product
    assert len({p.code for p in CATALOG}) == len(CATALOG)
    assert len({p.name for p in CATALOG}) == len(CATALOG)


def test_catalog_first_code() -> None:
    assert CATALOG[0].code == "2000000000015"
    assert CATALOG[0].name == "Whole milk 1 l"
