"""The words every part of Frigo uses for the states of orders, baskets, consents and offers.

Defined once here, because several cross the wire (an ``order_updated`` carries an order's or a
basket's status, a ``consent_changed`` a purpose, an ``offer_answered`` an answer) and the cloud's
tables, API and pages use the same words. Each is a ``Literal``; the tuple beside it lists its
values in order, for loops, SQL ``IN`` clauses and pages.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BASKET_STATUSES",
    "CONSENT_PURPOSES",
    "DATA_CATEGORIES",
    "FRIDGE_ORDER_STATUSES",
    "OFFER_ANSWERS",
    "OFFER_STATUSES",
    "OPEN_BASKET_STATUSES",
    "OPEN_ORDER_STATUSES",
    "ORDER_STATUSES",
    "PLANNING_MODES",
    "RETAILER_MOVES",
    "SUBSTITUTION_POLICIES",
    "BasketStatus",
    "ConsentPurpose",
    "DataCategory",
    "FridgeBasketStatus",
    "FridgeOrderStatus",
    "OfferAnswer",
    "OfferKind",
    "OfferStatus",
    "OrderStatus",
    "PlanningMode",
    "RetailerMove",
    "SubstitutionPolicy",
    "SubstitutionState",
]

# An order with a retailer (cloud/commerce/orders.py draws the state machine).
OrderStatus = Literal[
    "created",
    "accepted",
    "rejected",
    "picking",
    "substitution_proposed",
    "dispatched",
    "delivered",
    "cancelled",
]
ORDER_STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
# What a retailer reports an order moves to: every status but the one an order starts in.
RetailerMove = Literal[
    "accepted", "rejected", "picking", "substitution_proposed", "dispatched", "delivered", "cancelled"
]
# An order on its way: placed and not yet delivered or ended.
OPEN_ORDER_STATUSES: tuple[OrderStatus, ...] = (
    "created",
    "accepted",
    "picking",
    "substitution_proposed",
    "dispatched",
)
# Where the retailer may move an order from each status (keyed by OrderStatus; read with a stored one).
RETAILER_MOVES: dict[str, tuple[RetailerMove, ...]] = {
    "created": ("accepted", "rejected", "cancelled"),
    "accepted": ("picking", "cancelled"),
    "picking": ("substitution_proposed", "dispatched", "cancelled"),
    "substitution_proposed": ("cancelled",),
    "dispatched": ("delivered",),
}
# A line's proposed substitute, and the household's decision on it.
SubstitutionState = Literal["proposed", "approved", "rejected"]
# What a proposed substitution becomes: the household decides, or its policy does at once.
SubstitutionPolicy = Literal["ask", "accept", "refuse"]
SUBSTITUTION_POLICIES: tuple[SubstitutionPolicy, ...] = get_args(SubstitutionPolicy)

# A basket the planner made for a household (a planned order).
BasketStatus = Literal["suggested", "proposed", "approved", "skipped", "cancelled"]
BASKET_STATUSES: tuple[BasketStatus, ...] = get_args(BasketStatus)
# Baskets waiting for the household's answer.
OPEN_BASKET_STATUSES: tuple[BasketStatus, ...] = ("suggested", "proposed")
# What a household's baskets become: ordered at once, proposed for approval, or a shopping list.
PlanningMode = Literal["automatic", "approve", "suggest"]
PLANNING_MODES: tuple[PlanningMode, ...] = get_args(PlanningMode)

# The fridge hears of baskets it can answer (a suggestion is only a shopping list) and of orders.
FridgeBasketStatus = Literal["proposed", "approved", "skipped", "cancelled"]
FridgeOrderStatus = Literal[
    "proposed",
    "approved",
    "skipped",
    "created",
    "accepted",
    "rejected",
    "picking",
    "substitution_proposed",
    "dispatched",
    "delivered",
    "cancelled",
]
FRIDGE_ORDER_STATUSES: tuple[FridgeOrderStatus, ...] = get_args(FridgeOrderStatus)

# What a household consents to (cloud/commerce/consents.py says what each allows).
ConsentPurpose = Literal["ordering", "offers", "analytics"]
CONSENT_PURPOSES: tuple[ConsentPurpose, ...] = get_args(ConsentPurpose)
DataCategory = Literal["orders", "inventory", "consumption", "purchases"]
DATA_CATEGORIES: tuple[DataCategory, ...] = get_args(DataCategory)

# An offer: why it was made, where it stands, and the household's answers to it.
OfferKind = Literal["need", "complement", "campaign"]
OfferStatus = Literal["sent", "accepted", "dismissed", "not_this_category", "ordered"]
OFFER_STATUSES: tuple[OfferStatus, ...] = get_args(OfferStatus)
OfferAnswer = Literal["accepted", "dismissed", "not_this_category"]
OFFER_ANSWERS: tuple[OfferAnswer, ...] = get_args(OfferAnswer)
