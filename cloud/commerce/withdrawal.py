"""Withdrawing a consent, with what follows from it.

The ledger (``cloud/commerce/consents.py``) records the withdrawal; an ``ordering`` consent
withdrawn also cancels the household's orders with that retailer that can still be cancelled, and
no new order goes there (``cloud/commerce/orders.py``). Every way a household withdraws (the API,
the web page, the fridge) comes through here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cloud.commerce import consents, orders

__all__ = ["withdraw_consent"]


def withdraw_consent(
    connection: Connection, household_id: str, recipient: str, purpose: str, now: datetime
) -> list[str]:
    """Withdraw the household's active consent to the recipient for the purpose, with what follows
    from it; return the ids withdrawn (none if nothing was active)."""
    withdrawn = consents.withdraw(connection, household_id, recipient, purpose, now)
    if withdrawn and purpose == "ordering":
        orders.stop_ordering(connection, household_id, recipient, now)
    return withdrawn
