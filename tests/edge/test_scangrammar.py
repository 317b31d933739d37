"""The barcode-scanner line grammar of edge.scangrammar: GTINs, and the open, discard and move forms."""

from __future__ import annotations

import re

import pytest

from edge.errors import EdgeError, ScanError
from edge.scangrammar import Action, Discard, Move, Open, Scan, check_code, parse_scan

GRAMMAR = "expected CODE, +CODE, -CODE, 'open CODE', 'discard CODE [reason]' or 'move CODE LOCATION'"


# scans ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("4006381333931", Scan(code="4006381333931", delta=1)),  # GTIN-13
        ("+4006381333931", Scan(code="4006381333931", delta=1)),
        ("-4006381333931", Scan(code="4006381333931", delta=-1)),
        ("96385074", Scan(code="96385074", delta=1)),  # GTIN-8
        ("-036000291452", Scan(code="036000291452", delta=-1)),  # GTIN-12 (UPC-A)
        ("+00012345600012", Scan(code="00012345600012", delta=1)),  # GTIN-14
        ("10614141000415", Scan(code="10614141000415", delta=1)),  # GTIN-14
        ("2000000000015", Scan(code="2000000000015", delta=1)),  # in-store code (prefix 2)
        ("4006381333931\n", Scan(code="4006381333931", delta=1)),
        ("  +96385074 \r\n", Scan(code="96385074", delta=1)),
        ("\t-96385074\t", Scan(code="96385074", delta=-1)),
    ],
)
def test_accepted_scans(line: str, expected: Scan) -> None:
    assert parse_scan(line) == expected


@pytest.mark.parametrize(
    "line", ["", "\n", "   ", " \t \r\n", "#", "# a comment", "   # indented +4006381333931", "#-96385074"]
)
def test_blank_and_comment_lines_are_none(line: str) -> None:
    assert parse_scan(line) is None


@pytest.mark.parametrize(
    ("line", "expected_digit"),
    [
        ("4006381333932", 1),
        ("+4006381333930", 1),
        ("-96385070", 4),
        ("036000291453", 2),
        ("00012345600019", 2),
        ("2000000000016", 5),
    ],
)
def test_wrong_check_digit_names_the_expected_digit(line: str, expected_digit: int) -> None:
    code = line.lstrip("+-")
    with pytest.raises(ScanError) as info:
        parse_scan(line)
    assert str(info.value) == (
        f"{code} fails its check digit (expected {expected_digit} at the end): scan it again"
    )


@pytest.mark.parametrize("code", ["1234567", "123456789", "12345678901", "123456789012345", "7", "9" * 48])
def test_wrong_length_says_how_many_digits(code: str) -> None:
    with pytest.raises(ScanError) as info:
        parse_scan(f"+{code}")
    assert str(info.value) == f"{code} has {len(code)} digits: a GTIN has 8, 12, 13 or 14; scan it again"


@pytest.mark.parametrize(
    "code",
    [
        "MILK",
        "ABC123xyz",
        "400638133393X",
        "a",
        "café",
        "１２３４５６７８",  # full-width digits
        "٤٠٠٦٣٨١٣٣٣٩٣١",  # Arabic-Indic digits
        "4006381333931\x00",
        "12.5",
        "a_b",
        "12-3",
        "123+",
        "+1",  # what is left of "++1" after its sign
        "-",
        "+",
    ],
)
def test_codes_that_are_not_digits(code: str) -> None:
    with pytest.raises(ScanError) as info:
        check_code(code)
    assert str(info.value) == f"cannot read {code!r}: a product code is 8, 12, 13 or 14 digits (GTIN)"


@pytest.mark.parametrize(
    ("line", "bad_code"),
    [
        ("MILK", "MILK"),
        ("-EGGS", "EGGS"),
        ("++1", "+1"),
        ("+-1", "-1"),
        ("--1", "-1"),
        ("-", "-"),
        ("+", "+"),
    ],
)
def test_non_gtin_lines_name_the_code(line: str, bad_code: str) -> None:
    with pytest.raises(ScanError, match=re.escape(f"cannot read {bad_code!r}: a product code is")):
        parse_scan(line)


@pytest.mark.parametrize(
    "line",
    [
        "ab c",
        "+ 4006381333931",
        "4006381333931 4006381333931",
        "open",  # a verb without its code is read as a code...
        "open 4006381333931 now",
        "move 4006381333931",
        "move 4006381333931 freezer now",
        "discard 4006381333931 expired now",
        "throw 4006381333931",
    ],
)
def test_lines_outside_the_grammar_are_refused(line: str) -> None:
    with pytest.raises(ScanError) as info:
        parse_scan(line)
    message = str(info.value)
    if " " in line:
        assert message == f"cannot read {line!r}: {GRAMMAR}"
    else:
        # ...and refused as one.
        assert message == f"cannot read {line!r}: a product code is 8, 12, 13 or 14 digits (GTIN)"
    assert isinstance(info.value, EdgeError)
    assert isinstance(info.value, ValueError)


# open, discard, move ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("open 4006381333931", Open(code="4006381333931")),
        ("  OPEN   96385074  \n", Open(code="96385074")),
        ("Open\t036000291452", Open(code="036000291452")),
        ("discard 4006381333931", Discard(code="4006381333931", reason="other")),
        ("discard 4006381333931 expired", Discard(code="4006381333931", reason="expired")),
        ("discard 96385074 SPOILED", Discard(code="96385074", reason="spoiled")),
        ("DISCARD 96385074 other", Discard(code="96385074", reason="other")),
        ("move 4006381333931 freezer", Move(code="4006381333931", location="freezer")),
        ("move 96385074 Door", Move(code="96385074", location="door")),
        ("MOVE 00012345600012 fridge", Move(code="00012345600012", location="fridge")),
    ],
)
def test_accepted_verbs(line: str, expected: Action) -> None:
    assert parse_scan(line) == expected


@pytest.mark.parametrize("reason", ["eaten", "EXPIRED!", "old", "4006381333931"])
def test_unknown_discard_reason(reason: str) -> None:
    with pytest.raises(ScanError) as info:
        parse_scan(f"discard 4006381333931 {reason}")
    assert str(info.value) == f"unknown discard reason {reason.lower()!r}: use expired, spoiled or other"


@pytest.mark.parametrize("location", ["garage", "Cellar", "shelf", "fridge-top"])
def test_unknown_move_location(location: str) -> None:
    with pytest.raises(ScanError) as info:
        parse_scan(f"move 4006381333931 {location}")
    assert str(info.value) == f"unknown location {location.lower()!r}: use fridge, freezer or door"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("open MILK", "cannot read 'MILK': a product code is 8, 12, 13 or 14 digits (GTIN)"),
        ("open 4006381333932", "4006381333932 fails its check digit (expected 1 at the end): scan it again"),
        ("discard 1234567 expired", "1234567 has 7 digits: a GTIN has 8, 12, 13 or 14; scan it again"),
        ("discard 96385070", "96385070 fails its check digit (expected 4 at the end): scan it again"),
        ("move EGGS door", "cannot read 'EGGS': a product code is 8, 12, 13 or 14 digits (GTIN)"),
        (
            "move 036000291450 door",
            "036000291450 fails its check digit (expected 2 at the end): scan it again",
        ),
    ],
)
def test_verbs_check_their_code(line: str, message: str) -> None:
    with pytest.raises(ScanError) as info:
        parse_scan(line)
    assert str(info.value) == message


def test_actions_are_frozen() -> None:
    scan = Scan(code="4006381333931", delta=1)
    with pytest.raises(AttributeError):
        scan.delta = -1  # type: ignore[misc]
    move = Move(code="4006381333931", location="door")
    with pytest.raises(AttributeError):
        move.location = "freezer"  # type: ignore[misc]
