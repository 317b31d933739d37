"""VirtualHousehold: deterministic, and never asks for an impossible scan."""

from __future__ import annotations

from collections import Counter

import pytest

from edge.scangrammar import Scan, parse_scan
from simulator.catalog import CATALOG, Product
from simulator.household import VirtualHousehold

LINES = 200


class FakeFridge:
    """A dict-backed inventory that applies scanner lines and refuses impossible ones."""

    def __init__(self, products: tuple[Product, ...] = CATALOG) -> None:
        self.max_units = {p.code: p.max_units for p in products}
        self.counts: Counter[str] = Counter()

    def quantity(self, code: str) -> int:
        return self.counts[code]

    def apply(self, line: str) -> None:
        scan = parse_scan(line)
        # A household puts things in and takes them out: only scans, never open/discard/move.
        assert isinstance(scan, Scan), line
        assert scan.code in self.max_units, line
        if scan.delta < 0:
            assert self.counts[scan.code] > 0, f"{line}: removes a product the fridge does not hold"
        else:
            assert self.counts[scan.code] < self.max_units[scan.code], f"{line}: exceeds max_units"
        self.counts[scan.code] += scan.delta


def _run(seed: int, n: int = LINES, products: tuple[Product, ...] = CATALOG) -> tuple[list[str], FakeFridge]:
    household = VirtualHousehold(seed, products)
    fridge = FakeFridge(products)
    lines = []
    for _ in range(n):
        line = household.next_line(fridge.quantity)
        fridge.apply(line)
        lines.append(line)
    return lines, fridge


def test_same_seed_same_lines() -> None:
    first, _ = _run(seed=42)
    second, _ = _run(seed=42)
    assert len(first) == LINES
    assert first == second


def test_different_seeds_differ() -> None:
    assert _run(seed=1)[0] != _run(seed=2)[0]


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
def test_never_removes_absent_nor_exceeds_max_units(seed: int) -> None:
    lines, fridge = _run(seed)
    assert all(0 <= fridge.counts[code] <= fridge.max_units[code] for code in fridge.counts)
    # Both directions happen over 200 scans.
    assert any(line.startswith("+") for line in lines)
    assert any(line.startswith("-") for line in lines)


@pytest.mark.parametrize("seed", [0, 3, 99])
def test_uses_at_most_twelve_products_of_the_catalog(seed: int) -> None:
    lines, _ = _run(seed)
    codes = {line[1:] for line in lines}
    assert len(codes) <= 12
    assert codes <= {p.code for p in CATALOG}


def test_first_line_into_an_empty_fridge_is_an_addition() -> None:
    for seed in range(20):
        assert VirtualHousehold(seed).next_line(lambda _code: 0).startswith("+")


def test_full_fridge_only_removes() -> None:
    household = VirtualHousehold(5)
    full = {p.code: p.max_units for p in CATALOG}
    for _ in range(50):
        assert household.next_line(lambda code: full[code]).startswith("-")


def test_small_catalog() -> None:
    products = (Product(code="2000000000015", name="Milk", max_units=1),)
    lines, fridge = _run(seed=3, n=10, products=products)
    # With one product and room for one unit, scans must alternate.
    assert lines == ["+2000000000015", "-2000000000015"] * 5
    assert fridge.counts["2000000000015"] == 0
