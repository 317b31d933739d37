"""The barcode-scanner line grammar of edge.scanner."""

from __future__ import annotations

import pytest

from edge.errors import EdgeError, ScanError
from edge.scanner import Scan, parse_scan


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("4006381333931", Scan(code="4006381333931", delta=1)),
        ("+4006381333931", Scan(code="4006381333931", delta=1)),
        ("-4006381333931", Scan(code="4006381333931", delta=-1)),
        ("ABC123xyz", Scan(code="ABC123xyz", delta=1)),
        ("-a", Scan(code="a", delta=-1)),
        ("7", Scan(code="7", delta=1)),
        ("4006381333931\n", Scan(code="4006381333931", delta=1)),
        ("  +96385074 \r\n", Scan(code="96385074", delta=1)),
        ("\t-96385074\t", Scan(code="96385074", delta=-1)),
        ("X" * 48, Scan(code="X" * 48, delta=1)),
        ("-" + "9" * 48, Scan(code="9" * 48, delta=-1)),
    ],
)
def test_accepted_lines(line: str, expected: Scan) -> None:
    assert parse_scan(line) == expected


@pytest.mark.parametrize(
    "line", ["", "\n", "   ", " \t \r\n", "#", "# a comment", "   # indented +123", "#-123"]
)
def test_blank_and_comment_lines_are_none(line: str) -> None:
    assert parse_scan(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "++1",
        "--1",
        "+-1",
        "-",
        "+",
        "ab c",
        "+ 123",
        "12-3",
        "123+",
        "1" * 49,
        "+" + "1" * 49,
        "café",
        "１２３",  # full-width digits
        "٤٠٠٦",  # Arabic-Indic digits
        "123\x00",
        "12.5",
        "a_b",
    ],
)
def test_rejected_lines(line: str) -> None:
    with pytest.raises(ScanError, match="cannot read scan") as info:
        parse_scan(line)
    assert repr(line.strip()) in str(info.value)
    assert isinstance(info.value, EdgeError)
    assert isinstance(info.value, ValueError)


def test_error_explains_the_grammar() -> None:
    with pytest.raises(
        ScanError, match=r"expected CODE, \+CODE or -CODE with a code of 1-48 letters or digits"
    ):
        parse_scan("++1")


def test_scan_is_frozen() -> None:
    scan = Scan(code="1", delta=1)
    with pytest.raises(AttributeError):
        scan.delta = -1  # type: ignore[misc]
