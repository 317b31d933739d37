"""What the API's models share: errors, GTINs, and times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from cloud.db.engine import as_utc
from shared import gtin

__all__ = [
    "GTIN_SCHEMA",
    "CommaSeparated",
    "ErrorPublic",
    "FieldErrorPublic",
    "Gtin",
    "InvalidRequestPublic",
    "StoredTime",
    "UtcTime",
]


def _gtin(value: str) -> str:
    if not gtin.is_valid(value):
        raise ValueError("not a GTIN: 8, 12, 13 or 14 digits with a valid check digit")
    return value


# What the spec says of a GTIN: its digits, and the custom format "gtin" (the check digit).
GTIN_SCHEMA: dict[str, Any] = {"pattern": "^([0-9]{8}|[0-9]{12,14})$", "format": "gtin"}


Gtin = Annotated[str, AfterValidator(_gtin), Field(json_schema_extra=GTIN_SCHEMA)]


def utc_time(value: datetime) -> datetime:
    """Return the time in UTC; refuse one without a time zone. (SQLite keeps a time without its
    offset: 18:00+01:00 would come back as 18:00Z.)"""
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-12-01T18:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00, say
        raise ValueError("out of range once in UTC") from None


# A time a client sends: with its time zone, kept in UTC.
UtcTime = Annotated[datetime, AfterValidator(utc_time)]
# A time read from the database, as the API shows it: SQLite hands back naive datetimes stored as UTC.
StoredTime = Annotated[datetime, AfterValidator(as_utc)]


def _comma_separated(value: object) -> object:
    return [part for part in value.split(",") if part] if isinstance(value, str) else value


# A list the tables keep as comma-separated text (a consent's or an offer's data categories).
CommaSeparated = Annotated[list[str], BeforeValidator(_comma_separated)]


class ErrorPublic(BaseModel):
    """An error: what went wrong and what to do, in words."""

    detail: str


class FieldErrorPublic(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field.")
    msg: str
    type: str


class InvalidRequestPublic(BaseModel):
    """A request that cannot be done: its invalid fields, or the reason in words."""

    detail: str | list[FieldErrorPublic]
