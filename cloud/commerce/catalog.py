"""The retailers' catalogs: what each sells, at what price, in which pack.

A catalog upload is a bulk upsert: one statement for the whole batch, keyed by (retailer, GTIN),
so 10,000 products go in one request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.db.tables import CATALOG_ITEMS

__all__ = ["upsert_catalog"]

# Rows per INSERT statement: well under the parameter limits of SQLite (32,766) and PostgreSQL.
UPSERT_CHUNK = 2000


def upsert_catalog(
    connection: Connection, retailer_id: str, items: Sequence[dict[str, object]], now: datetime
) -> int:
    """Insert or update the retailer's products (dicts of the catalog columns); return how many."""
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    rows = [{"category": None, **item, "retailer_id": retailer_id, "updated_at": now} for item in items]
    statement = dialect_insert(CATALOG_ITEMS)
    updated = {
        column: statement.excluded[column]
        for column in (
            "name",
            "price",
            "currency",
            "pack_size",
            "unit",
            "available",
            "category",
            "updated_at",
        )
    }
    upsert = statement.on_conflict_do_update(index_elements=["retailer_id", "gtin"], set_=updated)
    # executemany: SQLAlchemy batches the rows into multi-row statements itself ("insertmanyvalues"),
    # compiling the statement once rather than once per chunk of literal rows.
    for start in range(0, len(rows), UPSERT_CHUNK):
        connection.execute(upsert, rows[start : start + UPSERT_CHUNK])
    return len(rows)
