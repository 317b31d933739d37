"""Withdrawing a consent, with what follows from it.

The ledger (``cloud/commerce/consents.py``) records the withdrawal; then:

- ``ordering``: the household's orders with that retailer that can still be cancelled are, and no
  new order goes there (``cloud/commerce/orders.py``);
- ``offers``: the household leaves that retailer's running campaigns (``cloud/commerce/campaigns.py``),
  so it is in none of their figures from now on; no offer is made any more (``offers.py`` reads
  the ledger at each run);
- ``analytics``: nothing to undo here: its purchases leave the retailer's conversion figures at
  once and the co-purchase statistics at the next offer run, since both read only the consents
  that hold when they are computed. Its campaign assignments, which come from the offers consent,
  stay while that consent does (removed, they would be made again at the next offer run).

Every way a household withdraws (the API, the web page, the fridge) comes through here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cloud.commerce import campaigns, consents, orders

__all__ = ["withdraw_consent"]


def withdraw_consent(
    connection: Connection, household_id: str, recipient: str, purpose: str, now: datetime
) -> list[str]:
    """Withdraw the household's active consent to the recipient for the purpose, with what follows
    from it; return the ids withdrawn (none if nothing was active)."""
    withdrawn = consents.withdraw(connection, household_id, recipient, purpose, now)
    if withdrawn and purpose == "ordering":
        orders.stop_ordering(connection, household_id, recipient, now)
    if withdrawn and purpose == "offers":
        campaigns.leave(connection, household_id, recipient, now)
    return withdrawn
