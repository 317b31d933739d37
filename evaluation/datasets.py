"""Loaders of the evaluation data files, with errors that say what to fix.

- Next-basket JSON: ``{"<user id>": [[-1], [item, ...], ..., [-1]]}``, each user's baskets oldest first,
  item ids integers; the ``[-1]`` marker baskets are optional and dropped, and so are empty baskets.
- Transactions CSV: header ``household_id,day,item_id``, one row per item bought; ``day`` is a day number
  or a ``yyyy-mm-dd`` date (the first row decides which, for the whole file).
- Member baskets CSV (the Groceries data set): header ``member_id,date,item``, ``date`` as ``dd-mm-yyyy``.

`hold_out_last` turns day baskets into the next-basket form: each household's last basket to predict.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

from cloud.errors import EvaluationDataError

__all__ = [
    "DayBaskets",
    "NextBaskets",
    "TransactionFormat",
    "hold_out_last",
    "load_next_baskets",
    "load_transactions",
]

# A household's baskets: (day number, items bought that day), in day order.
DayBaskets = dict[str, list[tuple[int, list[str]]]]
# Each user's baskets of integer item ids, oldest first (the next-basket JSON's content).
NextBaskets = dict[str, list[list[int]]]

MARKER = [-1]
NEXT_BASKET_SHAPE = '{"<user id>": [[-1], [item, ...], ..., [-1]]} with integer item ids'
INTEGER = re.compile(r"[+-]?\d+")


class TransactionFormat(StrEnum):
    """The CSV layouts `load_transactions` reads."""

    TRANSACTIONS = "transactions"  # household_id,day,item_id
    MEMBER_BASKETS = "member-baskets"  # member_id,date,item (date dd-mm-yyyy)


HEADERS = {
    TransactionFormat.TRANSACTIONS: ["household_id", "day", "item_id"],
    TransactionFormat.MEMBER_BASKETS: ["member_id", "date", "item"],
}


def _read_text(path: Path, what: str) -> str:
    """Return the file's text, or raise EvaluationDataError naming the file and what it should be."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationDataError(f"{path}: no such file; give the path of {what}") from None
    except IsADirectoryError:
        raise EvaluationDataError(f"{path} is a directory; give the path of {what}") from None
    except UnicodeDecodeError as exc:
        raise EvaluationDataError(f"{path}: not UTF-8 text ({exc.reason}); give {what}") from None
    except OSError as exc:
        raise EvaluationDataError(f"{path}: cannot read it ({exc.strerror}); give {what}") from None


def load_next_baskets(path: Path) -> dict[str, list[list[int]]]:
    """Load a next-basket JSON file: each user's baskets, oldest first."""
    what = f"a next-basket JSON file, {NEXT_BASKET_SHAPE}"
    text = _read_text(path, what)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvaluationDataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); expected {what}"
        ) from None
    if not isinstance(raw, dict):
        raise EvaluationDataError(
            f"{path}: the top level is a JSON {type(raw).__name__}; expected an object {NEXT_BASKET_SHAPE}"
        )
    if not raw:
        raise EvaluationDataError(f"{path}: holds no users; expected {NEXT_BASKET_SHAPE}")
    users: dict[str, list[list[int]]] = {}
    for user, baskets in raw.items():
        if not isinstance(baskets, list):
            raise EvaluationDataError(
                f"{path}: user {user!r} has a {type(baskets).__name__}; expected a list of baskets "
                f"(lists of integer item ids), as in {NEXT_BASKET_SHAPE}"
            )
        kept: list[list[int]] = []
        for n, basket in enumerate(baskets):
            if not isinstance(basket, list):
                raise EvaluationDataError(
                    f"{path}: user {user!r}, basket {n}: a {type(basket).__name__}, not a list of item ids "
                    f"(each user maps to a list of baskets: {NEXT_BASKET_SHAPE})"
                )
            if basket == MARKER or not basket:
                continue
            for item in basket:
                if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                    raise EvaluationDataError(
                        f"{path}: user {user!r}, basket {n}: item {item!r} is not an item id "
                        "(item ids are integers >= 0; -1 only as the [-1] marker basket)"
                    )
            kept.append(basket)
        users[user] = kept
    return users


def _day(value: str, numbered: bool, fmt: TransactionFormat) -> int:
    """Return the day number of a CSV day field; raise ValueError if it is not one."""
    if fmt is TransactionFormat.MEMBER_BASKETS:
        return datetime.strptime(value, "%d-%m-%Y").date().toordinal()
    if numbered:
        if not INTEGER.fullmatch(value):
            raise ValueError(value)
        return int(value)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(value)
    return date.fromisoformat(value).toordinal()


def load_transactions(path: Path, fmt: TransactionFormat = TransactionFormat.TRANSACTIONS) -> DayBaskets:
    """Load a transactions CSV into each household's baskets (one per day), in day order."""
    expected = ",".join(HEADERS[fmt])
    what = f"a CSV file with the header {expected}"
    text = _read_text(path, what)
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise EvaluationDataError(f"{path}: the file is empty; expected {what}")
    if [h.strip().lower() for h in header] != HEADERS[fmt]:
        other = next(f for f in TransactionFormat if f is not fmt)
        raise EvaluationDataError(
            f"{path}: the header is {','.join(header)!r}; expected {expected} "
            f"(or use --format {other.value} for {','.join(HEADERS[other])})"
        )
    days: dict[str, dict[int, set[str]]] = {}
    numbered: bool | None = None
    for line, row in enumerate(rows, start=2):
        if not row or all(not field.strip() for field in row):
            continue
        if len(row) != 3:
            raise EvaluationDataError(f"{path}, line {line}: {len(row)} fields; expected 3 ({expected})")
        household, day_text, item = (field.strip() for field in row)
        if not household or not item:
            raise EvaluationDataError(f"{path}, line {line}: empty {HEADERS[fmt][0 if not household else 2]}")
        if numbered is None:
            numbered = bool(INTEGER.fullmatch(day_text))
        try:
            day = _day(day_text, numbered, fmt)
        except ValueError:
            if fmt is TransactionFormat.MEMBER_BASKETS:
                hint = "a dd-mm-yyyy date"
            elif numbered:
                hint = "a day number (the first row's day was one, so every day must be)"
            else:
                hint = "a yyyy-mm-dd date (the first row's day was a date, so every day must be)"
            raise EvaluationDataError(f"{path}, line {line}: day {day_text!r} is not {hint}") from None
        days.setdefault(household, {}).setdefault(day, set()).add(item)
    if not days:
        raise EvaluationDataError(f"{path}: no rows after the header; expected {what}")
    return {
        household: [(day, sorted(items)) for day, items in sorted(by_day.items())]
        for household, by_day in days.items()
    }


def hold_out_last(households: DayBaskets) -> tuple[NextBaskets, NextBaskets, list[str]]:
    """Return the next-basket history and future of day baskets, and the item names by id.

    Items are numbered in name order. A household with baskets on two or more days has its last one in
    the future and the others in the history; a household with one keeps it as history.
    """
    names = sorted({item for baskets in households.values() for _, basket in baskets for item in basket})
    ids = {name: n for n, name in enumerate(names)}
    history: NextBaskets = {}
    future: NextBaskets = {}
    for household, baskets in households.items():
        coded = [[ids[item] for item in basket] for _, basket in baskets]
        if len(coded) >= 2:
            history[household], future[household] = coded[:-1], [coded[-1]]
        else:
            history[household] = coded
    return history, future, names
