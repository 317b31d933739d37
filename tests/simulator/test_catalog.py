"""The built-in product catalog, and load_catalog on good and bad CSV files."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import pytest

from shared import gtin
from shared.messages import Location, ProductInfo, Unit
from simulator.catalog import CATALOG, COLUMNS, MAX_UNITS, Category, Product, load_catalog
from simulator.errors import CatalogError, InvalidProduct

HEADER = ",".join(COLUMNS)
MILK = "2000000000015,Whole milk 1 l,dairy,ml,1000,1060,10,4,door,true,4"
EGGS = '2000000000039,"Eggs, 10",eggs,unit,10,640,28,,fridge,true,2'
# Real products' GTINs, outside the restricted-circulation range: a GTIN-13 and a UPC-A.
REAL = "4006381333931,Real cheese 200 g,cheese,g,200,210,60,14,fridge,true,2"
REAL_UPC = "036000291452,Real juice 1 l,drinks,ml,1000,1080,365,,door,false,3"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the built-in catalog -------------------------------------------------------------------


def test_has_at_least_200_products() -> None:
    assert len(CATALOG) >= 200


def test_codes_are_unique_restricted_circulation_gtin13() -> None:
    for product in CATALOG:
        assert len(product.code) == 13, product
        assert 20 <= int(product.code[:2]) <= 29, product
        assert gtin.is_valid(product.code), product
    assert len({p.code for p in CATALOG}) == len(CATALOG)
    assert len({p.name for p in CATALOG}) == len(CATALOG)


def test_first_products_keep_their_codes() -> None:
    # Docs and other tests show these codes; the catalog grew after them.
    assert (CATALOG[0].code, CATALOG[0].name) == ("2000000000015", "Whole milk 1 l")
    assert (CATALOG[23].code, CATALOG[23].name) == ("2000000000244", "Oat drink 1 l")


@pytest.mark.parametrize("product", CATALOG, ids=lambda p: p.name)
def test_fields_are_within_their_domains(product: Product) -> None:
    assert isinstance(product.category, Category)
    assert product.unit in get_args(Unit)
    assert product.location in get_args(Location)
    assert product.pack_size > 0
    if product.unit == "unit":
        assert float(product.pack_size).is_integer()
    assert product.unit_grams is not None
    assert product.unit_grams > 0
    assert product.shelf_life_days > 0
    opened = product.opened_shelf_life_days
    assert opened is None or 0 < opened <= product.shelf_life_days
    assert 1 <= product.max_units <= MAX_UNITS
    assert isinstance(product.perishable, bool)


def test_frozen_goods_are_in_the_freezer_and_nothing_else_is() -> None:
    for product in CATALOG:
        assert (product.location == "freezer") == (product.category == Category.FROZEN), product


def test_categories_have_enough_products() -> None:
    counts = Counter(p.category for p in CATALOG)
    assert len(counts) >= 12
    assert sum(1 for n in counts.values() if n >= 5) >= 12, counts


def test_info_validates_as_product_info() -> None:
    for product in CATALOG:
        info = ProductInfo.model_validate(product.info().model_dump())
        assert (info.code, info.name, info.unit, info.location) == (
            product.code,
            product.name,
            product.unit,
            product.location,
        )
        assert info.unit_grams == product.unit_grams
        assert info.shelf_life_days == product.shelf_life_days
        assert info.opened_shelf_life_days == product.opened_shelf_life_days
        assert info.perishable == product.perishable


def test_product_needs_only_code_name_and_max_units() -> None:
    product = Product("2000000000015", "Milk", 1)
    assert (product.category, product.unit, product.pack_size, product.location) == (
        Category.OTHER,
        "unit",
        1,
        "fridge",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "2000000000016"}, "code"),
        ({"name": " "}, "name"),
        ({"max_units": 13}, "max_units"),
        ({"pack_size": 0.0}, "pack_size"),
        ({"pack_size": 2.5}, "pack_size"),  # pieces of unit "unit" are whole
        ({"unit_grams": float("nan")}, "unit_grams"),
        ({"shelf_life_days": 0}, "shelf_life_days"),
        ({"opened_shelf_life_days": 8}, "opened_shelf_life_days"),  # longer once opened than closed
    ],
)
def test_product_rejects_values_outside_their_domain(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidProduct, match=field) as caught:
        replace(Product("2000000000015", "Milk", 1), **changes)
    assert caught.value.field == field


# -- load_catalog -----------------------------------------------------------------------------


def test_load_round_trips_a_small_catalog(tmp_path: Path) -> None:
    products = load_catalog(write(tmp_path, HEADER, MILK, EGGS))
    assert products == (
        Product(
            "2000000000015",
            "Whole milk 1 l",
            4,
            category=Category.DAIRY,
            unit="ml",
            pack_size=1000,
            unit_grams=1060,
            shelf_life_days=10,
            opened_shelf_life_days=4,
            location="door",
            perishable=True,
        ),
        Product(
            "2000000000039",
            "Eggs, 10",
            2,
            category=Category.EGGS,
            unit="unit",
            pack_size=10,
            unit_grams=640,
            shelf_life_days=28,
            opened_shelf_life_days=None,
            location="fridge",
            perishable=True,
        ),
    )
    assert products[0] == CATALOG[0]


def test_load_accepts_real_gtins_columns_in_any_order_and_extra_columns(tmp_path: Path) -> None:
    reordered = ",".join(reversed(COLUMNS)) + ",brand"
    real = ",".join(reversed(REAL.split(","))) + ",Acme"
    products = load_catalog(write(tmp_path, reordered, real))
    assert [p.code for p in products] == ["4006381333931"]
    assert load_catalog(write(tmp_path, HEADER, REAL, REAL_UPC))[1].unit_grams == 1080


def test_load_reads_a_byte_order_mark_and_leaves_weight_unknown(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(HEADER + "\n" + MILK.replace(",1060,", ",,") + "\n", encoding="utf-8-sig")
    (milk,) = load_catalog(path)
    assert milk.unit_grams is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [HEADER, MILK, REAL.replace("4006381333931", "4006381333932")],
            r"line 3, column 'code': expected a GTIN.*for 400638133393 it is 1.*got '4006381333932'",
        ),
        (
            [HEADER.replace(",location", ""), MILK.replace(",door", "")],
            r"line 1: missing column\(s\) location",
        ),
        ([HEADER, MILK.replace(",1000,", ",a litre,")], r"line 2, column 'pack_size': expected a number"),
        ([HEADER, EGGS.replace(",28,", ",4 weeks,")], r"line 2, column 'shelf_life_days': expected a whole"),
        (
            [HEADER, MILK, EGGS.replace(",unit,", ",dozen,")],
            r"line 3, column 'unit': expected one of unit, g, ml",
        ),
        (
            [HEADER, MILK.replace(",door,", ",cellar,")],
            r"line 2, column 'location': expected one of fridge, freezer, door, got 'cellar'",
        ),
        ([HEADER, MILK.replace(",true,", ",yes,")], r"line 2, column 'perishable': expected true or false"),
        ([HEADER, MILK.replace(",dairy,", ",pantry,")], r"line 2, column 'category': expected one of dairy"),
        ([HEADER, MILK.removesuffix(",4") + ",2.5"], r"line 2, column 'max_units': expected a whole number"),
        (
            [HEADER, MILK.removesuffix(",4") + ",13"],
            r"line 2, column 'max_units': expected a whole number from 1 to 12, got '13'",
        ),
        (
            [HEADER, MILK.replace(",10,4,", ",10,14,")],
            r"line 2, column 'opened_shelf_life_days': "
            r"expected a whole number from 1 to shelf_life_days \(10\), or nothing, got '14'",
        ),
        (
            [HEADER, MILK, EGGS, MILK.replace("Whole milk", "Other milk")],
            r"line 4, column 'code': expected a code not used before \(it is on line 2\)",
        ),
        ([HEADER, MILK, EGGS + ",extra"], r"line 3: the row has more cells than the header's 11 columns"),
        ([HEADER, MILK.rsplit(",", 1)[0]], r"line 2: the row has fewer cells than the header's 11 columns"),
        ([HEADER + ",name", MILK + ",milk"], r"line 1: column\(s\) name appear more than once"),
        ([HEADER], r"no product follows"),
    ],
)
def test_load_rejects_bad_input_naming_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(CatalogError, match=message) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(str(path))


def test_load_rejects_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(CatalogError, match="the file is empty; expected a header: code,name,"):
        load_catalog(path)


def test_load_rejects_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\n" + MILK.replace("Whole", "Crème") + "\n").encode("latin-1"))
    with pytest.raises(CatalogError, match=r"line 2: not UTF-8 text"):
        load_catalog(path)
