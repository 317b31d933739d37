"""The consent ledger: which company may use which of a household's data, for what, since when.

Shaped like PSD2 consents and GDPR Art. 7: one row per grant, for one household, one recipient (a
retailer) and one purpose, with the data categories it covers, the version of the text the household
was shown, the channel it came through (``api``, ``web`` or ``fridge``), when it was granted and
withdrawn, and an optional expiry. Rows are never updated but to record a withdrawal, so the ledger
shows what held at any moment (:func:`was_active`), and every use of data can be traced to the
consent that allowed it.

Purposes:

- ``ordering``: the retailer receives the household's orders (lines, slot, substitutions). Choosing a
  retailer (``PUT /households/{id}/retailer``) grants it; withdrawing it cancels the household's
  orders with that retailer that can still be cancelled, and no new order goes there.
- ``offers``: the retailer may make the household offers, from the data the grant names: by
  default its inventory and consumption (what the fridge predicts it needs); with ``purchases``,
  complements from its own baskets too (``offers.py``). Withdrawing it takes the household out of
  the retailer's running campaigns. Default: none.
- ``analytics``: the household's purchases count in the co-purchase statistics ("bought
  together") and in the aggregates retailers see (the retailer's campaigns' conversion), while a
  grant naming ``purchases`` holds. Default: none.

Withdrawing is as easy as granting: one API call, or one command on the fridge.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, Select, and_, insert, or_, select, update

from cloud.db.engine import as_utc
from cloud.db.tables import CONSENTS, RETAILERS
from cloud.errors import CloudError
from shared.vocabulary import CONSENT_PURPOSES, DATA_CATEGORIES, DataCategory

Channel = Literal["api", "web", "fridge"]
# The data each purpose uses unless the grant says otherwise.
DEFAULT_CATEGORIES: dict[str, tuple[DataCategory, ...]] = {
    "ordering": ("orders",),
    "offers": ("inventory", "consumption"),
    "analytics": ("purchases",),
}
# The versions of the texts shown when consent is asked for; a new text is a new version.
CURRENT_TEXT: dict[str, str] = {
    "ordering": "ordering-2026-11",
    "offers": "offers-2026-11",
    "analytics": "analytics-2026-11",
}


class ConsentError(CloudError, ValueError):
    """A consent that cannot be granted or withdrawn as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One row of the ledger."""

    id: str
    household_id: str
    recipient: str
    purpose: str
    data_categories: tuple[str, ...]
    text_version: str
    channel: str
    granted_at: datetime
    withdrawn_at: datetime | None
    expires_at: datetime | None

    def active_at(self, moment: datetime) -> bool:
        """Return whether this grant held at ``moment``."""
        moment = as_utc(moment)
        if as_utc(self.granted_at) > moment:
            return False
        if self.withdrawn_at is not None and as_utc(self.withdrawn_at) <= moment:
            return False
        return self.expires_at is None or as_utc(self.expires_at) > moment


def grant(
    connection: Connection,
    household_id: str,
    recipient: str,
    purpose: str,
    now: datetime,
    *,
    channel: Channel = "api",
    data_categories: Sequence[str] | None = None,
    text_version: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Grant ``recipient`` the purpose; a grant already active is replaced by this one. Return its id."""
    if purpose not in CONSENT_PURPOSES:
        raise ConsentError(f"a purpose is one of {', '.join(CONSENT_PURPOSES)}, not {purpose!r}")
    categories = tuple(data_categories) if data_categories else DEFAULT_CATEGORIES[purpose]
    unknown = sorted(set(categories) - set(DATA_CATEGORIES))
    if unknown:
        raise ConsentError(f"unknown data categories {unknown}: use {', '.join(DATA_CATEGORIES)}")
    if expires_at is not None and expires_at <= now:
        raise ConsentError("a consent that expires must expire in the future")
    if connection.execute(select(RETAILERS.c.id).where(RETAILERS.c.id == recipient)).first() is None:
        raise ConsentError(f"no recipient {recipient!r}: consent is given to a retailer that exists")
    withdraw(connection, household_id, recipient, purpose, now)
    consent_id = str(uuid.uuid4())
    connection.execute(
        insert(CONSENTS).values(
            id=consent_id,
            household_id=household_id,
            recipient=recipient,
            purpose=purpose,
            data_categories=",".join(sorted(set(categories))),
            text_version=text_version or CURRENT_TEXT[purpose],
            channel=channel,
            granted_at=now,
            expires_at=expires_at,
        )
    )
    return consent_id


def withdraw(
    connection: Connection, household_id: str, recipient: str, purpose: str, now: datetime
) -> list[str]:
    """Withdraw the household's active consent to the recipient for the purpose in the ledger;
    return the ids withdrawn (none if nothing was active). What follows from a withdrawal (open
    orders cancelled) is :func:`cloud.commerce.withdrawal.withdraw_consent`'s."""
    table = CONSENTS.c
    rows = connection.execute(
        update(CONSENTS)
        .where(
            table.household_id == household_id,
            table.recipient == recipient,
            table.purpose == purpose,
            table.withdrawn_at.is_(None),
        )
        .values(withdrawn_at=now)
        .returning(table.id)
    ).all()
    return [str(row.id) for row in rows]


def is_active(connection: Connection, household_id: str, recipient: str, purpose: str, now: datetime) -> bool:
    """Return whether the household's consent to the recipient for the purpose holds now."""
    table = CONSENTS.c
    found = connection.execute(
        select(table.id).where(
            table.household_id == household_id,
            table.recipient == recipient,
            table.purpose == purpose,
            table.granted_at <= now,
            or_(table.withdrawn_at.is_(None), table.withdrawn_at > now),
            or_(table.expires_at.is_(None), table.expires_at > now),
        )
    ).first()
    return found is not None


def active_pairs(connection: Connection, purpose: str, now: datetime) -> set[tuple[str, str]]:
    """Return every (household, recipient) whose consent for the purpose holds now."""
    table = CONSENTS.c
    rows = connection.execute(
        select(table.household_id, table.recipient).where(
            table.purpose == purpose,
            table.granted_at <= now,
            or_(table.withdrawn_at.is_(None), table.withdrawn_at > now),
            or_(table.expires_at.is_(None), table.expires_at > now),
        )
    ).all()
    return {(str(h), str(r)) for h, r in rows}


def active_grants(connection: Connection, purpose: str, now: datetime) -> dict[tuple[str, str], str]:
    """Return the id of the grant that holds now for every (household, recipient) with the purpose."""
    table = CONSENTS.c
    rows = connection.execute(
        select(table.household_id, table.recipient, table.id).where(
            table.purpose == purpose,
            table.granted_at <= now,
            or_(table.withdrawn_at.is_(None), table.withdrawn_at > now),
            or_(table.expires_at.is_(None), table.expires_at > now),
        )
    ).all()
    return {(str(h), str(r)): str(i) for h, r, i in rows}


def active_scopes(
    connection: Connection, purpose: str, now: datetime, *, recipient: str | None = None
) -> dict[tuple[str, str], tuple[str, frozenset[str]]]:
    """Return the grant that holds now, and the data categories it names, for every (household,
    recipient) with the purpose (only ``recipient``'s if given): what a use of data checks its scope
    against."""
    table = CONSENTS.c
    query = select(table.household_id, table.recipient, table.id, table.data_categories).where(
        table.purpose == purpose,
        table.granted_at <= now,
        or_(table.withdrawn_at.is_(None), table.withdrawn_at > now),
        or_(table.expires_at.is_(None), table.expires_at > now),
    )
    if recipient is not None:
        query = query.where(table.recipient == recipient)
    return {
        (str(h), str(r)): (str(i), frozenset(c for c in str(categories).split(",") if c))
        for h, r, i, categories in connection.execute(query).all()
    }


def holding(purpose: str, now: datetime, *, recipient: str, naming: DataCategory) -> Select[tuple[str]]:
    """Return a query of the households whose consent to the recipient for the purpose holds at
    ``now`` and names the data category: a subquery, so that a use of data reads only theirs."""
    table = CONSENTS.c
    return select(table.household_id).where(
        table.purpose == purpose,
        table.recipient == recipient,
        table.granted_at <= now,
        or_(table.withdrawn_at.is_(None), table.withdrawn_at > now),
        or_(table.expires_at.is_(None), table.expires_at > now),
        # Categories are stored sorted and comma-separated, and no category's name is in another's.
        table.data_categories.contains(naming),
    )


def consenting(connection: Connection, purpose: str, now: datetime) -> set[str]:
    """Return the households with a consent for the purpose, to any recipient, that holds now."""
    return {household for household, _recipient in active_pairs(connection, purpose, now)}


def ledger(connection: Connection, household_id: str) -> list[Grant]:
    """Return every grant of the household, newest first."""
    table = CONSENTS.c
    rows = connection.execute(
        select(CONSENTS).where(table.household_id == household_id).order_by(table.granted_at.desc(), table.id)
    ).all()
    return [_grant(row) for row in rows]


def was_active(connection: Connection, consent_id: str, household_id: str, moment: datetime) -> bool:
    """Return whether the grant ``consent_id`` of the household held at ``moment``."""
    row = connection.execute(
        select(CONSENTS).where(and_(CONSENTS.c.id == consent_id, CONSENTS.c.household_id == household_id))
    ).first()
    return row is not None and _grant(row).active_at(moment)


def _grant(row: object) -> Grant:
    mapping = row._mapping  # type: ignore[attr-defined]
    return Grant(
        id=mapping["id"],
        household_id=mapping["household_id"],
        recipient=mapping["recipient"],
        purpose=mapping["purpose"],
        data_categories=tuple(c for c in mapping["data_categories"].split(",") if c),
        text_version=mapping["text_version"],
        channel=mapping["channel"],
        granted_at=mapping["granted_at"],
        withdrawn_at=mapping["withdrawn_at"],
        expires_at=mapping["expires_at"],
    )
