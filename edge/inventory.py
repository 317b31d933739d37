"""What is in the fridge: lots of products, with where they are and when they are due.

A lot is one scan-in (or one delivered order line): a quantity in a unit, a location, a
best-before date and, once opened, the day it was opened. Consumption takes from lots in Grocy's
order: opened lots first, then the earliest due, then the first in.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from shared.messages import Location, ProductInfo, Unit

# Consumption order, as Grocy does it: opened first, then earliest due (undated last), then first in.
_CONSUMPTION_ORDER = "ORDER BY opened_at IS NULL, best_before IS NULL, best_before, id"
_PRODUCT_COLUMNS = (
    "code, name, unit, unit_grams, shelf_life_days, opened_shelf_life_days, perishable, location, known, "
    "pack_size"
)
_LOT_COLUMNS = "id, code, quantity, unit, location, best_before, opened_at, added_at, order_id, withheld"


@dataclass(frozen=True, slots=True)
class Product:
    """What the fridge knows about a product; ``known`` is False until the cloud's catalog says."""

    code: str
    name: str | None
    unit: Unit
    unit_grams: float | None
    shelf_life_days: int | None
    opened_shelf_life_days: int | None
    perishable: bool
    location: Location
    known: bool
    pack_size: float | None = None  # net g or ml in one pack; unit_grams when not known

    @property
    def label(self) -> str:
        """Return the name to show people, or the code for an unknown product."""
        return self.name or f"unknown product {self.code}"


def _product(row: Any) -> Product:
    return Product(
        code=row[0],
        name=row[1],
        unit=row[2],
        unit_grams=row[3],
        shelf_life_days=row[4],
        opened_shelf_life_days=row[5],
        perishable=bool(row[6]),
        location=row[7],
        known=bool(row[8]),
        pack_size=row[9],
    )


def _unknown(code: str) -> Product:
    """Return the defaults of a product the catalog has not described."""
    return Product(code, None, "unit", None, None, None, True, "fridge", False)


@dataclass(frozen=True, slots=True)
class Lot:
    """One lot of a product in the fridge."""

    id: int
    code: str
    quantity: float
    unit: Unit
    location: Location
    best_before: date | None
    opened_at: datetime | None
    added_at: datetime
    order_id: str | None
    withheld: float


def _lot(row: tuple[object, ...]) -> Lot:
    lot_id, code, quantity, unit, location, best_before, opened_at, added_at, order_id, withheld = row
    return Lot(
        id=int(str(lot_id)),
        code=str(code),
        quantity=float(str(quantity)),
        unit=unit,  # type: ignore[arg-type]
        location=location,  # type: ignore[arg-type]
        best_before=date.fromisoformat(str(best_before)) if best_before else None,
        opened_at=datetime.fromisoformat(str(opened_at)) if opened_at else None,
        added_at=datetime.fromisoformat(str(added_at)),
        order_id=str(order_id) if order_id else None,
        withheld=float(str(withheld)),
    )


class Inventory:
    """Lots and products in the agent's database; writes happen inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # products ---------------------------------------------------------------------------------

    def product(self, code: str) -> Product:
        """Return what is known about ``code``; an unknown code gets defaults and is remembered."""
        query = f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE code = ?"
        row = self._conn.execute(query, (code,)).fetchone()
        if row is None:
            self._conn.execute("INSERT OR IGNORE INTO products (code) VALUES (?)", (code,))
            return _unknown(code)
        return _product(row)

    def learn(self, info: ProductInfo) -> None:
        """Store catalog details of a product, resolving it if it was unknown."""
        self._conn.execute(
            "INSERT INTO products (code, name, unit, unit_grams, shelf_life_days, opened_shelf_life_days, "
            "perishable, location, known, pack_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
            "ON CONFLICT (code) DO UPDATE SET "
            "name = excluded.name, unit = excluded.unit, unit_grams = excluded.unit_grams, "
            "pack_size = excluded.pack_size, "
            "shelf_life_days = excluded.shelf_life_days, "
            "opened_shelf_life_days = excluded.opened_shelf_life_days, perishable = excluded.perishable, "
            "location = excluded.location, known = 1",
            (
                info.code,
                info.name,
                info.unit,
                info.unit_grams,
                info.shelf_life_days,
                info.opened_shelf_life_days,
                int(info.perishable),
                info.location,
                info.pack_size,
            ),
        )

    def unknown_codes(self) -> list[str]:
        """Return codes scanned but not yet resolved by the cloud's catalog."""
        return [r[0] for r in self._conn.execute("SELECT code FROM products WHERE known = 0 ORDER BY code")]

    # lots -------------------------------------------------------------------------------------

    def add_lot(
        self,
        code: str,
        quantity: float,
        unit: Unit,
        location: Location,
        best_before: date | None,
        added_at: datetime,
        order_id: str | None = None,
    ) -> int:
        """Create a lot and return its id."""
        cursor = self._conn.execute(
            "INSERT INTO lots (code, quantity, unit, location, best_before, added_at, order_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                code,
                quantity,
                unit,
                location,
                best_before.isoformat() if best_before else None,
                added_at.isoformat(),
                order_id,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def lot(self, lot_id: int) -> Lot | None:
        """Return one lot, or None."""
        row = self._conn.execute(f"SELECT {_LOT_COLUMNS} FROM lots WHERE id = ?", (lot_id,)).fetchone()
        return _lot(row) if row else None

    def lots_of(self, code: str) -> list[Lot]:
        """Return the lots of ``code`` still in the fridge, in consumption order."""
        rows = self._conn.execute(
            f"SELECT {_LOT_COLUMNS} FROM lots WHERE code = ? AND quantity > 0 {_CONSUMPTION_ORDER}", (code,)
        ).fetchall()
        return [_lot(r) for r in rows]

    def lots(self) -> list[Lot]:
        """Return every lot in the fridge, by code and consumption order."""
        rows = self._conn.execute(
            f"SELECT {_LOT_COLUMNS} FROM lots WHERE quantity > 0 ORDER BY code, opened_at IS NULL, "
            "best_before IS NULL, best_before, id"
        ).fetchall()
        return [_lot(r) for r in rows]

    def lots_described(self) -> list[tuple[Lot, str | None, bool]]:
        """Return every lot in the fridge with its product's name and perishability, in one query."""
        columns = ", ".join(f"lots.{column.strip()}" for column in _LOT_COLUMNS.split(","))
        rows = self._conn.execute(
            f"SELECT {columns}, products.name, coalesce(products.perishable, 1) FROM lots "
            "LEFT JOIN products ON products.code = lots.code WHERE lots.quantity > 0 "
            "ORDER BY lots.code, lots.opened_at IS NULL, lots.best_before IS NULL, lots.best_before, lots.id"
        ).fetchall()
        return [(_lot(row[:-2]), row[-2], bool(row[-1])) for row in rows]

    def take(self, lot_id: int, quantity: float) -> float:
        """Take up to ``quantity`` from a lot; return what is left in it."""
        self._conn.execute("UPDATE lots SET quantity = max(quantity - ?, 0) WHERE id = ?", (quantity, lot_id))
        row = self._conn.execute("SELECT quantity FROM lots WHERE id = ?", (lot_id,)).fetchone()
        return float(row[0])

    def withhold(self, lot_id: int, quantity: float) -> float:
        """Add to a lot's withheld consumption and return the total withheld."""
        self._conn.execute("UPDATE lots SET withheld = withheld + ? WHERE id = ?", (quantity, lot_id))
        return float(self._conn.execute("SELECT withheld FROM lots WHERE id = ?", (lot_id,)).fetchone()[0])

    def release_withheld(self, lot_id: int) -> None:
        """Forget a lot's withheld consumption once it has been reported."""
        self._conn.execute("UPDATE lots SET withheld = 0 WHERE id = ?", (lot_id,))

    def open(self, lot_id: int, opened_at: datetime, best_before: date | None) -> None:
        """Mark a lot opened, with its shortened due date."""
        self._conn.execute(
            "UPDATE lots SET opened_at = ?, best_before = ? WHERE id = ?",
            (opened_at.isoformat(), best_before.isoformat() if best_before else None, lot_id),
        )

    def move(self, lot_id: int, location: Location) -> None:
        """Move a lot to another compartment."""
        self._conn.execute("UPDATE lots SET location = ? WHERE id = ?", (location, lot_id))

    def quantity(self, code: str) -> float:
        """Return how much of ``code`` the fridge holds, over all its lots."""
        row = self._conn.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM lots WHERE code = ?", (code,)
        ).fetchone()
        return float(row[0])

    def snapshot(self) -> dict[str, float]:
        """Return every product the fridge holds, with its total quantity."""
        rows = self._conn.execute(
            "SELECT code, SUM(quantity) FROM lots WHERE quantity > 0 GROUP BY code ORDER BY code"
        ).fetchall()
        return {str(code): float(quantity) for code, quantity in rows}

    def clear(self) -> None:
        """Forget every lot and product (a wipe)."""
        self._conn.execute("DELETE FROM lots")
        self._conn.execute("DELETE FROM products")


def due_after_opening(product: Product, lot: Lot, opened_on: date) -> date | None:
    """Return a lot's due date once opened: the earlier of its date and the opened shelf life."""
    if product.opened_shelf_life_days is None:
        return lot.best_before
    opened_due = opened_on + timedelta(days=product.opened_shelf_life_days)
    return opened_due if lot.best_before is None else min(lot.best_before, opened_due)
