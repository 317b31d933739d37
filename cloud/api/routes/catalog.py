"""A retailer's catalog: uploaded in bulk, read a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from cloud.api.dependencies import BAD_BODY, MAX_PAGE, RETAILER_ERRORS, ClockDep, RetailerDep, SessionDep
from cloud.api.schemas.retail import CatalogItemPublic, CatalogUpload, CatalogUploadPublic
from cloud.commerce.catalog import upsert_catalog
from cloud.db.tables import CATALOG_ITEMS

__all__ = ["router"]

router = APIRouter(tags=["retailer"])


@router.put("/retailer/catalog", responses={**RETAILER_ERRORS, **BAD_BODY})
def put_catalog(
    upload: CatalogUpload, retailer: RetailerDep, session: SessionDep, clock: ClockDep
) -> CatalogUploadPublic:
    """Insert or update up to 10,000 of the retailer's products in one request."""
    count = upsert_catalog(
        session.connection(), retailer, [item.model_dump() for item in upload.items], clock.now()
    )
    session.commit()
    products = session.execute(
        select(func.count()).select_from(CATALOG_ITEMS).where(CATALOG_ITEMS.c.retailer_id == retailer)
    ).scalar_one()
    return CatalogUploadPublic(retailer_id=retailer, upserted=count, products=int(products))


@router.get("/retailer/catalog", responses=RETAILER_ERRORS)
def get_catalog(
    retailer: RetailerDep,
    session: SessionDep,
    after: Annotated[str, Query(max_length=14, description="Return GTINs after this one.")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[CatalogItemPublic]:
    """Return the retailer's products by GTIN, a page at a time."""
    items = CATALOG_ITEMS.c
    rows = session.execute(
        select(CATALOG_ITEMS)
        .where(items.retailer_id == retailer, items.gtin > after)
        .order_by(items.gtin)
        .limit(limit)
    ).all()
    return [CatalogItemPublic.model_validate(row, from_attributes=True) for row in rows]
