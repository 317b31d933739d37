"""Products the virtual households buy, and a loader for catalogs of products in CSV.

The built-in catalog (``data/catalog.csv``, loaded as ``CATALOG``) has GTIN-13 codes in the GS1
restricted-circulation range (prefix 20-29), which no real product carries, so the simulator never
claims a real product's barcode. ``load_catalog`` also reads catalogs of real products: any GTIN with a
correct check digit.

A catalog CSV has a header naming the columns of ``COLUMNS``, in any order; other columns are ignored.
Only ``unit_grams`` and ``opened_shelf_life_days`` may be left empty (weight unknown; opening does not
shorten the product's life).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from importlib.resources import as_file, files
from pathlib import Path
from typing import TypeVar, get_args

from shared import gtin
from shared.messages import Location, ProductInfo, Unit
from simulator.errors import CatalogError, InvalidProduct


class Category(StrEnum):
    """The aisle a product comes from; households' habits are drawn per category."""

    DAIRY = "dairy"
    CHEESE = "cheese"
    EGGS = "eggs"
    MEAT = "meat"
    FISH = "fish"
    DELI = "deli"
    VEGETABLES = "vegetables"
    FRUIT = "fruit"
    BAKERY = "bakery"
    DRINKS = "drinks"
    READY_MEALS = "ready_meals"
    CONDIMENTS = "condiments"
    DESSERTS = "desserts"
    FROZEN = "frozen"
    PLANT_BASED = "plant_based"
    BABY = "baby"
    OTHER = "other"


UNITS: tuple[Unit, ...] = get_args(Unit)
LOCATIONS: tuple[Location, ...] = get_args(Location)
COLUMNS = (
    "code",
    "name",
    "category",
    "unit",
    "pack_size",
    "unit_grams",
    "shelf_life_days",
    "opened_shelf_life_days",
    "location",
    "perishable",
    "max_units",
)
# ProductInfo, which carries a product to the fridges, allows names of at most this length.
NAME_MAX = 200
# A household keeps at most a dozen packs of anything (a crate of cans); more is a typo.
MAX_UNITS = 12
# A week, the life of a typical fresh pack: for products made in code that do not say.
DEFAULT_SHELF_LIFE_DAYS = 7

_GTIN_EXPECTED = "a GTIN-8, -12, -13 or -14 with a correct check digit"
_T = TypeVar("_T", bound=str)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True, slots=True)
class Product:
    """A product type: its barcode, what it is, how it is counted, kept and stored.

    ``unit`` is how eating it is counted: in pieces ("unit"), grams or millilitres; ``pack_size`` is that
    amount in one pack. ``unit_grams`` is the weight of one pack, for weight shelves. ``max_units`` is
    how many packs a household keeps at most.
    """

    code: str
    name: str
    max_units: int
    _: KW_ONLY
    category: Category = Category.OTHER
    unit: Unit = "unit"
    pack_size: float = 1
    unit_grams: float | None = None
    shelf_life_days: int = DEFAULT_SHELF_LIFE_DAYS
    opened_shelf_life_days: int | None = None
    location: Location = "fridge"
    perishable: bool = True

    def __post_init__(self) -> None:
        if not gtin.is_valid(self.code):
            raise InvalidProduct(self.code, "code", _gtin_expected(self.code), self.code)
        if not self.name.strip() or len(self.name) > NAME_MAX:
            raise InvalidProduct(self.code, "name", f"1 to {NAME_MAX} characters", self.name)
        if not 1 <= self.max_units <= MAX_UNITS:
            raise InvalidProduct(
                self.code, "max_units", f"a whole number from 1 to {MAX_UNITS}", self.max_units
            )
        if not isinstance(self.category, Category):
            raise InvalidProduct(self.code, "category", f"one of {', '.join(Category)}", self.category)
        if self.unit not in UNITS:
            raise InvalidProduct(self.code, "unit", f"one of {', '.join(UNITS)}", self.unit)
        if not _positive(self.pack_size):
            raise InvalidProduct(self.code, "pack_size", "a number above 0", self.pack_size)
        if self.unit == "unit" and not float(self.pack_size).is_integer():
            raise InvalidProduct(
                self.code, "pack_size", "a whole number of pieces for unit 'unit'", self.pack_size
            )
        if self.unit_grams is not None and not _positive(self.unit_grams):
            raise InvalidProduct(self.code, "unit_grams", "a number above 0, or nothing", self.unit_grams)
        if self.shelf_life_days < 1:
            raise InvalidProduct(self.code, "shelf_life_days", "a whole number above 0", self.shelf_life_days)
        opened = self.opened_shelf_life_days
        if opened is not None and not 1 <= opened <= self.shelf_life_days:
            raise InvalidProduct(
                self.code,
                "opened_shelf_life_days",
                f"a whole number from 1 to shelf_life_days ({self.shelf_life_days}), or nothing",
                opened,
            )
        if self.location not in LOCATIONS:
            raise InvalidProduct(self.code, "location", f"one of {', '.join(LOCATIONS)}", self.location)

    def info(self) -> ProductInfo:
        """Return the product as the catalog the cloud sends to fridges describes it."""
        return ProductInfo(
            code=self.code,
            name=self.name,
            unit=self.unit,
            unit_grams=self.unit_grams,
            pack_size=self.pack_size if self.unit != "unit" else None,
            shelf_life_days=self.shelf_life_days,
            opened_shelf_life_days=self.opened_shelf_life_days,
            perishable=self.perishable,
            location=self.location,
        )


def _gtin_expected(code: str) -> str:
    if code.isascii() and code.isdigit() and len(code) in (8, 12, 13, 14):
        return f"{_GTIN_EXPECTED} (for {code[:-1]} it is {gtin.check_digit(code[:-1])})"
    return _GTIN_EXPECTED


class _Row:
    """One CSV row's cells, parsed per column; errors name the file, line and column."""

    def __init__(self, path: Path, line: int, cells: dict[str, str]) -> None:
        self.path = path
        self.line = line
        self._cells = cells

    def error(self, column: str, expected: str) -> CatalogError:
        got = self._cells.get(column, "")
        return CatalogError(
            f"{self.path}, line {self.line}, column {column!r}: expected {expected}, got {got!r}"
        )

    def text(self, column: str) -> str:
        return self._cells[column].strip()

    def number(self, column: str) -> float:
        try:
            return float(self.text(column))
        except ValueError:
            raise self.error(column, "a number") from None

    def optional_number(self, column: str) -> float | None:
        return self.number(column) if self.text(column) else None

    def whole(self, column: str) -> int:
        try:
            return int(self.text(column))
        except ValueError:
            raise self.error(column, "a whole number") from None

    def optional_whole(self, column: str) -> int | None:
        return self.whole(column) if self.text(column) else None

    def flag(self, column: str) -> bool:
        text = self.text(column).lower()
        if text not in ("true", "false"):
            raise self.error(column, "true or false")
        return text == "true"

    def choice(self, column: str, options: tuple[_T, ...]) -> _T:
        text = self.text(column)
        for option in options:
            if option == text:
                return option
        raise self.error(column, f"one of {', '.join(options)}")

    def product(self) -> Product:
        try:
            return Product(
                code=self.text("code"),
                name=self.text("name"),
                max_units=self.whole("max_units"),
                category=self.choice("category", tuple(Category)),
                unit=self.choice("unit", UNITS),
                pack_size=self.number("pack_size"),
                unit_grams=self.optional_number("unit_grams"),
                shelf_life_days=self.whole("shelf_life_days"),
                opened_shelf_life_days=self.optional_whole("opened_shelf_life_days"),
                location=self.choice("location", LOCATIONS),
                perishable=self.flag("perishable"),
            )
        except InvalidProduct as exc:
            raise self.error(exc.field, exc.expected) from None


def load_catalog(path: Path) -> tuple[Product, ...]:
    """Read a catalog CSV; raise CatalogError naming the line and column of the first bad cell."""
    products: list[Product] = []
    first_line: dict[str, int] = {}
    data = path.read_bytes()
    try:
        # utf-8-sig: spreadsheets often save CSV with a byte order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(f"{path}, line {line}: not UTF-8 text; save the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if header is None:
            raise CatalogError(f"{path}: the file is empty; expected a header: {','.join(COLUMNS)}")
        missing = [column for column in COLUMNS if column not in header]
        if missing:
            raise CatalogError(
                f"{path}, line {reader.line_num}: missing column(s) {', '.join(missing)}; "
                f"the header needs: {','.join(COLUMNS)}"
            )
        doubled = sorted({column for column in header if header.count(column) > 1})
        if doubled:
            raise CatalogError(
                f"{path}, line {reader.line_num}: column(s) {', '.join(doubled)} appear more than once"
            )
        for cells in reader:
            # DictReader fills a short row with None and keeps a long row's excess under None.
            if None in cells or None in cells.values():
                raise CatalogError(
                    f"{path}, line {reader.line_num}: the row has {'more' if None in cells else 'fewer'} "
                    f"cells than the header's {len(header)} columns"
                )
            row = _Row(path, reader.line_num, cells)
            product = row.product()
            if product.code in first_line:
                raise row.error("code", f"a code not used before (it is on line {first_line[product.code]})")
            first_line[product.code] = reader.line_num
            products.append(product)
    except csv.Error as exc:
        raise CatalogError(f"{path}, line {reader.line_num}: not valid CSV: {exc}") from None
    if not products:
        raise CatalogError(f"{path}: the header is there but no product follows")
    return tuple(products)


def _load_builtin() -> tuple[Product, ...]:
    with as_file(files("simulator") / "data" / "catalog.csv") as path:
        return load_catalog(path)


CATALOG: tuple[Product, ...] = _load_builtin()
