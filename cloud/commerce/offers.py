"""Offers: useful, explained, capped, and only from the companies the household chose.

An offer run goes through the households that consented to offers from a retailer
(``cloud/commerce/consents.py``; none by default) and, for each, gathers candidates from three
signals, each only where the grant names every data category it reads (:data:`NEED_DATA`,
:data:`HISTORY_DATA`):

- **need**: an item the household's fridge predicts runs out within :data:`NEED_DAYS`, sold by the
  retailer ("your milk runs out on Thursday"); it uses the household's inventory and consumption.
- **complement**: an item the household never bought, from :mod:`cloud.commerce.explore` fitted on
  the baskets of the households that consented to analytics (the engine `frigo eval offers`
  measures), or, for a household outside that fit, plain co-purchase lift ("households who buy
  pasta go on to buy parmesan"); it uses the household's purchases and others' in aggregate.
- **campaign**: the retailer's campaign (``cloud/commerce/campaigns.py``), in the variant the
  household's arm gives it (none for the holdout); it uses none of the household's data.

The offers grant's default categories (inventory and consumption) allow needs and campaigns; a
complement needs a grant naming purchases. The rules below that read the fridge's data read only
what the grant names too: "plenty of it" the inventory and consumption, "just bought" the
purchases. The household's dealings with the offers and orders themselves (what it has on order,
was offered, answered, turned off) are always read: they only ever hold an offer back.

Never echoes: no item the household has plenty of, bought in the last :data:`JUST_BOUGHT`, has on
order or in a basket, or was offered in the last :data:`COOLDOWN`; nothing of a category it turned
off ("not this category"). Answers teach the ranking: each dismissal in a category halves the
score of that category's candidates, each acceptance raises it by a fifth. At most
:data:`WEEKLY_CAP` offers a household a week, none in its quiet hours (its own time zone), at most
:data:`PER_RUN` a run. Every offer records the consent that allowed it, the signal and the data it
used (its signal's categories), and goes to the household's fridges (``offer_sent``) and its API.
The co-purchase statistics are fitted on the baskets of households whose ``analytics`` consent
names purchases.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, select, update

from cloud.commerce import campaigns, consents
from cloud.commerce.explore import ExploreEngine, ExploreParams
from cloud.commerce.history import bought, offered, on_order, suppressed
from cloud.commerce.sending import send
from cloud.db.engine import as_utc, insert_ignoring_duplicates
from cloud.db.tables import (
    CATALOG_ITEMS,
    EVENTS,
    HOUSEHOLDS,
    OFFER_SUPPRESSIONS,
    OFFERS,
)
from cloud.errors import CloudError
from cloud.planning.planner import HouseholdPlan, ItemPlan, plan_households
from shared.clock import Clock
from shared.vocabulary import OFFER_ANSWERS, DataCategory, OfferKind

log = logging.getLogger(__name__)

NEED_DAYS = 4.0  # an item running out within this many days is a need
AMPLE_DAYS = 7.0  # an item lasting longer than this is never offered
JUST_BOUGHT = timedelta(days=3)
COOLDOWN = timedelta(days=14)  # the same item is not offered again sooner
WEEKLY_CAP = 3
PER_RUN = 1
QUIET_HOURS = (time(21, 0), time(8, 0))  # local time: from, until
OFFER_LIFETIME = timedelta(days=3)
# Co-purchase: baskets of the last LOOKBACK; a pair needs MIN_SUPPORT baskets and MIN_LIFT.
LOOKBACK = timedelta(days=90)
MIN_SUPPORT = 3
MIN_LIFT = 1.5
CAMPAIGN_SCORE = 0.8  # below an item about to run out, above most complements
EXPLORE_K = 20  # new items per household from cloud.commerce.explore
EXPLORE_NEIGHBOURS = 100
# What households buy together moves slowly, and fitting it is the run's costliest part (every
# analytics-consenting household's baskets): refit at most this often, and at once when a household
# it was fitted on stops consenting.
LIFT_MAX_AGE = timedelta(hours=6)
DISMISSED_FACTOR = 0.5
ACCEPTED_FACTOR = 1.2
# The household's data each signal reads: a signal runs only under a grant naming all of it, and its
# offers record it. Popularity (without the household's history) and campaigns read none.
NEED_DATA: tuple[DataCategory, ...] = ("inventory", "consumption")
HISTORY_DATA: tuple[DataCategory, ...] = ("purchases",)

Strategy = Literal["frigo", "popular"]


class OfferError(CloudError, ValueError):
    """An answer to an offer that cannot be taken; the message says why."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item the engine could offer a household, and why."""

    gtin: str
    name: str
    category: str | None
    kind: OfferKind
    reason: str
    data: tuple[str, ...]
    score: float
    campaign_id: str | None = None
    arm: str | None = None


@dataclass
class OfferRun:
    """What one offer run did."""

    households: int = 0
    offers: int = 0
    quiet: int = 0
    capped: int = 0
    sent_to: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lift:
    """Co-purchase statistics over consenting households' baskets."""

    support: dict[tuple[str, str], int]  # (a, b) -> baskets with both
    count: dict[str, int]  # item -> baskets with it
    baskets: int
    partners: dict[str, list[str]] = field(default_factory=dict)  # a -> every b bought with it
    # household -> its new items by cloud.commerce.explore (code, signal, the item behind it,
    # lift), best first
    explore: dict[str, list[tuple[str, str, str | None, float | None]]] = field(default_factory=dict)

    def lift(self, a: str, b: str) -> float:
        """Return how much likelier b is in a basket with a than in any basket."""
        both = self.support.get((a, b), 0)
        if both < MIN_SUPPORT or not self.baskets:
            return 0.0
        return both * self.baskets / (self.count[a] * self.count[b])


def co_purchases(baskets: Iterable[Iterable[str]]) -> Lift:
    """Count items and ordered pairs over baskets (each a set of item codes)."""
    support: Counter[tuple[str, str]] = Counter()
    count: Counter[str] = Counter()
    total = 0
    for basket in baskets:
        items = sorted(set(basket))
        total += 1
        count.update(items)
        for a, b in itertools.permutations(items, 2):
            support[(a, b)] += 1
    partners: dict[str, list[str]] = defaultdict(list)
    for a, b in support:
        partners[a].append(b)
    return Lift(dict(support), dict(count), total, dict(partners))


@dataclass
class LiftCache:
    """The co-purchase statistics of an earlier run, kept for the next runs of a worker.

    They are fitted again when older than ``max_age`` (or from a clock that went back), and at once
    when a household they were fitted on no longer consents to analytics: a withdrawal takes effect
    at the next run. Households that start consenting wait for the next fit.
    """

    max_age: timedelta = LIFT_MAX_AGE
    fits: int = 0
    _lift: Lift | None = None
    _fitted_at: datetime | None = None
    _households: frozenset[str] = frozenset()

    def get(self, connection: Connection, now: datetime) -> Lift:
        """Return the statistics for a run at ``now``, fitting them again if they are due."""
        consenting = {
            household
            for (household, _recipient), (_id, data) in consents.active_scopes(
                connection, "analytics", now
            ).items()
            if set(HISTORY_DATA) <= data
        }
        fresh = (
            self._lift is not None
            and self._fitted_at is not None
            and self._fitted_at <= now < self._fitted_at + self.max_age
            and self._households <= consenting
        )
        if not fresh:
            self._lift, self._households = _lift(connection, now, consenting)
            self._fitted_at = now
            self.fits += 1
        assert self._lift is not None
        return self._lift


def run_offers(
    engine: Engine,
    clock: Clock,
    *,
    weekly_cap: int = WEEKLY_CAP,
    strategy: Strategy = "frigo",
    lift_cache: LiftCache | None = None,
) -> OfferRun:
    """Make the offers due now, for every household with a consent to offers; return what was done.

    ``strategy`` "popular" is the baseline evaluations compare with: the most bought items the
    household never bought, under the same consents, filters and caps. ``lift_cache`` keeps the
    co-purchase statistics between runs; without it they are fitted every run.
    """
    now = clock.now()
    run = OfferRun()
    with engine.begin() as connection:
        grants = consents.active_scopes(connection, "offers", now)
        if not grants:
            return run
        lift = (lift_cache or LiftCache()).get(connection, now)
        catalogs: dict[str, dict[str, Any]] = {}  # each retailer's, read once a run
        by_household: dict[str, list[tuple[str, str, frozenset[str]]]] = defaultdict(list)
        for (household, retailer), (consent_id, data) in sorted(grants.items()):
            by_household[household].append((retailer, consent_id, data))
        for household, recipients in by_household.items():
            run.households += 1
            made = _offer_household(
                connection, household, recipients, lift, now, weekly_cap, run, strategy, catalogs
            )
            run.offers += made
            if made:
                run.sent_to.append(household)
    if run.offers:
        log.info("offer run: %d households with consent, %d offers", run.households, run.offers)
    return run


def candidates(
    connection: Connection,
    household: str,
    retailer: str,
    lift: Lift,
    now: datetime,
    strategy: Strategy = "frigo",
    *,
    granted: Collection[str],
    catalog: dict[str, Any] | None = None,
    plan: HouseholdPlan | None = None,
) -> list[Candidate]:
    """Return the household's candidates from the retailer, best first, after every filter, reading
    only the data categories ``granted`` (those the household's offers consent to the retailer names).

    ``catalog`` (the retailer's, from :func:`sold_by`) and ``plan`` (the household's) save a run
    that offers for several households or retailers from reading them again.
    """
    catalog = catalog if catalog is not None else sold_by(connection, retailer)
    if not catalog:
        return []
    reads_stock, reads_history = set(NEED_DATA) <= set(granted), set(HISTORY_DATA) <= set(granted)
    if reads_stock and plan is None:
        (plan,) = plan_households(connection, [household], now)
    items = {item.code: item for item in plan.items} if reads_stock and plan is not None else {}
    history = bought(connection, household, now - LOOKBACK) if reads_history else None

    found: dict[str, Candidate] = {}
    if strategy == "popular":
        _add_popular(found, lift, catalog, history)
        items = {}
    _add_needs(found, items, catalog, now)
    if strategy == "frigo":
        if history is not None:
            _add_explored(found, lift.explore.get(household, []), catalog, history)
            if household not in lift.explore:
                _add_co_purchased(found, lift, catalog, history)
        _add_campaigns(found, connection, retailer, household, catalog, now)
    return _kept(connection, household, found, items, now, reads_history=reads_history)


def _add_popular(
    found: dict[str, Candidate], lift: Lift, catalog: dict[str, Any], history: set[str] | None
) -> None:
    """Add the most bought products the household never bought (the popularity baseline); without
    its history (``None``: not granted), the most bought products, from others' baskets alone."""
    seen = history or set()
    ranked = sorted((n, code) for code, n in lift.count.items() if code in catalog and code not in seen)
    for rank, (_n, code) in enumerate(reversed(ranked)):
        found[code] = Candidate(
            code,
            str(catalog[code].name),
            catalog[code].category,
            "complement",
            f"{catalog[code].name} is popular with other households",
            HISTORY_DATA if history is not None else (),
            1.0 / (1 + rank),
        )


def _add_needs(
    found: dict[str, Candidate], items: dict[str, ItemPlan], catalog: dict[str, Any], now: datetime
) -> None:
    """Add the products the household runs out of within NEED_DAYS."""
    for code, item in items.items():
        p50 = item.days_left[1]
        if code not in catalog or not math.isfinite(p50) or p50 > NEED_DAYS or item.rate <= 0:
            continue
        name = str(catalog[code].name)
        when = "has run out" if p50 < 0.5 else f"runs out on {(now + timedelta(days=round(p50))):%A}"
        found[code] = Candidate(
            code,
            name,
            catalog[code].category,
            "need",
            f"your {name} {when}, as your fridge sees it used",
            NEED_DATA,
            1.0 + (NEED_DAYS - p50) / NEED_DAYS,
        )


def _add_explored(
    found: dict[str, Candidate],
    explored: list[tuple[str, str, str | None, float | None]],
    catalog: dict[str, Any],
    history: set[str],
) -> None:
    """Add the household's new items from the explore model, with the signal behind each."""
    for rank, (code, signal, because, strength) in enumerate(explored):
        if code in history or code in found or code not in catalog:
            continue
        name = str(catalog[code].name)
        if signal == "co-purchase" and because is not None and strength is not None:
            owned = str(catalog[because].name) if because in catalog else "what you buy"
            reason = f"households who buy {owned} go on to buy {name} ({strength:.1f}× as often as others)"
        elif signal == "neighbours":
            reason = f"households that buy what you buy also buy {name}"
        else:
            reason = f"{name} is what households are taking up lately"
        found[code] = Candidate(
            code, name, catalog[code].category, "complement", reason, HISTORY_DATA, 0.85 / (1 + rank)
        )


def _add_co_purchased(
    found: dict[str, Candidate], lift: Lift, catalog: dict[str, Any], history: set[str]
) -> None:
    """Add what is often bought with what the household buys (for households the explore model
    has no items for)."""
    for a in sorted(history):
        for b in lift.partners.get(a, ()):
            if b in history or b in found or b not in catalog:
                continue
            strength = lift.lift(a, b)
            if strength < MIN_LIFT:
                continue
            score = min(strength / 10.0, 0.9)
            known = found.get(b)
            if known is not None and known.score >= score:
                continue
            owned_name = str(catalog[a].name) if a in catalog else "what you buy"
            found[b] = Candidate(
                b,
                str(catalog[b].name),
                catalog[b].category,
                "complement",
                f"households who buy {owned_name} often buy {catalog[b].name} "
                f"({strength:.1f}× as often as others)",
                HISTORY_DATA,
                score,
            )


def _add_campaigns(
    found: dict[str, Candidate],
    connection: Connection,
    retailer: str,
    household: str,
    catalog: dict[str, Any],
    now: datetime,
) -> None:
    """Add the retailer's running campaigns, in the arm the household falls in (none in the holdout)."""
    for campaign in campaigns.active(connection, retailer, now):
        if campaign.gtin in found or campaign.gtin not in catalog:
            continue
        arm = campaigns.assign(connection, campaign, household, now)
        if arm == campaigns.CONTROL:
            continue  # the holdout: no offer, its purchases are the baseline
        variant = next(v for v in campaign.variants if v.name == arm)
        off = f" ({variant.discount_percent:g} % off)" if variant.discount_percent else ""
        found[campaign.gtin] = Candidate(
            campaign.gtin,
            str(catalog[campaign.gtin].name),
            catalog[campaign.gtin].category,
            "campaign",
            f"{variant.message}{off}: a campaign of the shop you allow offers from",
            (),
            CAMPAIGN_SCORE,
            campaign.id,
            arm,
        )


def _kept(
    connection: Connection,
    household: str,
    found: dict[str, Candidate],
    items: dict[str, ItemPlan],
    now: datetime,
    *,
    reads_history: bool,
) -> list[Candidate]:
    """Return the candidates that pass every filter, best first, scored by the household's taste.

    "Plenty of it" reads ``items`` (empty unless the grant names inventory and consumption), "just
    bought" the purchases only if ``reads_history``.
    """
    just = bought(connection, household, now - JUST_BOUGHT) if reads_history else set()
    coming = on_order(connection, household, now - JUST_BOUGHT)
    recent = offered(connection, household, now - COOLDOWN)
    turned_off = suppressed(connection, household)
    taste = _taste(connection, household)
    kept = []
    for candidate in found.values():
        held = items.get(candidate.gtin)
        if held is not None and math.isfinite(held.days_left[1]) and held.days_left[1] > AMPLE_DAYS:
            continue  # plenty of it
        if candidate.gtin in just or candidate.gtin in coming or candidate.gtin in recent:
            continue  # just bought, on its way, or offered lately
        if candidate.category is not None and candidate.category in turned_off:
            continue  # the household turned the category off
        factor = taste.get(candidate.category, 1.0) if candidate.category is not None else 1.0
        kept.append(dataclasses.replace(candidate, score=candidate.score * factor))
    return sorted(kept, key=lambda c: (-c.score, c.gtin))


def sold_by(connection: Connection, retailer: str) -> dict[str, Any]:
    """Return the retailer's available products by GTIN (catalog rows)."""
    rows = connection.execute(
        select(CATALOG_ITEMS).where(CATALOG_ITEMS.c.retailer_id == retailer, CATALOG_ITEMS.c.available)
    ).all()
    return {str(row.gtin): row for row in rows}


def answer(connection: Connection, household: str, offer_id: str, given: str, now: datetime) -> str:
    """Record the household's answer to an offer; return the offer's new status."""
    if given not in OFFER_ANSWERS:
        raise OfferError(f"an answer is one of {', '.join(OFFER_ANSWERS)}, not {given!r}")
    offer = connection.execute(
        select(OFFERS).where(OFFERS.c.id == offer_id, OFFERS.c.household_id == household)
    ).first()
    if offer is None:
        raise LookupError(f"household {household!r} has no offer {offer_id!r}")
    if offer.status != "sent":
        raise OfferError(f"offer {offer_id} was answered already: it is {offer.status}")
    connection.execute(update(OFFERS).where(OFFERS.c.id == offer_id).values(status=given, answered_at=now))
    if given == "not_this_category" and offer.category is not None:
        connection.execute(
            insert_ignoring_duplicates(connection.engine, OFFER_SUPPRESSIONS).values(
                household_id=household, category=offer.category, created_at=now
            )
        )
    return given


# -- one household ---------------------------------------------------------------------------


def _offer_household(
    connection: Connection,
    household: str,
    recipients: list[tuple[str, str, frozenset[str]]],
    lift: Lift,
    now: datetime,
    weekly_cap: int,
    run: OfferRun,
    strategy: Strategy,
    catalogs: dict[str, dict[str, Any]],
) -> int:
    row = connection.execute(select(HOUSEHOLDS.c.timezone).where(HOUSEHOLDS.c.id == household)).first()
    if row is None:
        return 0
    if _quiet(now, str(row.timezone)):
        run.quiet += 1
        return 0
    week = connection.execute(
        select(OFFERS.c.id).where(
            OFFERS.c.household_id == household, OFFERS.c.created_at > now - timedelta(days=7)
        )
    ).all()
    room = min(weekly_cap - len(week), PER_RUN)
    if room <= 0:
        run.capped += 1
        return 0
    pool = []
    plan = None
    if any(set(NEED_DATA) <= data for _retailer, _consent, data in recipients):
        (plan,) = plan_households(connection, [household], now)  # once, whatever the retailers
    for retailer, consent_id, data in recipients:
        if retailer not in catalogs:
            catalogs[retailer] = sold_by(connection, retailer)
        found = candidates(
            connection,
            household,
            retailer,
            lift,
            now,
            strategy,
            granted=data,
            catalog=catalogs[retailer],
            plan=plan,
        )
        pool += [(candidate, retailer, consent_id) for candidate in found]
    pool.sort(key=lambda entry: (-entry[0].score, entry[0].gtin, entry[1]))
    made, seen = 0, set()
    for candidate, retailer, consent_id in pool:
        if made >= room or candidate.gtin in seen:
            continue
        seen.add(candidate.gtin)
        send(connection, household, retailer, consent_id, candidate, now + OFFER_LIFETIME, now)
        made += 1
    return made


def _quiet(now: datetime, zone: str) -> bool:
    try:
        local = now.astimezone(ZoneInfo(zone)).time()
    except (ZoneInfoNotFoundError, ValueError):
        local = now.time()
    start, end = QUIET_HOURS
    return local >= start or local < end


def _lift(connection: Connection, now: datetime, households: set[str]) -> tuple[Lift, frozenset[str]]:
    """Return co-purchase statistics over the baskets of ``households`` (those that consent to
    analytics), and the households whose baskets went into them."""
    if not households:
        return Lift({}, {}, 0), frozenset()
    rows = connection.execute(
        select(EVENTS.c.household_id, EVENTS.c.code, EVENTS.c.occurred_at).where(
            EVENTS.c.type == "item_added",
            EVENTS.c.household_id.in_(sorted(households)),
            EVENTS.c.occurred_at >= now - LOOKBACK,
        )
    ).all()
    baskets: dict[tuple[str, str], set[str]] = defaultdict(set)
    for household, code, occurred in rows:
        baskets[(str(household), as_utc(occurred).date().isoformat())].add(str(code))
    return fit(baskets), frozenset(household for household, _day in baskets)


def fit(baskets: dict[tuple[str, str], set[str]]) -> Lift:
    """Return co-purchase statistics and cloud.commerce.explore's new items per household, fitted on
    baskets keyed by (household, ISO day)."""
    return dataclasses.replace(co_purchases(baskets.values()), explore=_explore(baskets))


def _explore(
    baskets: dict[tuple[str, str], set[str]],
) -> dict[str, list[tuple[str, str, str | None, float | None]]]:
    """Return each consenting household's new items from cloud.commerce.explore, fitted on their baskets."""
    codes = sorted({code for items in baskets.values() for code in items})
    ids = {code: i for i, code in enumerate(codes)}
    by_household: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for (household, day), items in baskets.items():
        by_household[household].append((day, sorted(ids[c] for c in items)))
    households = sorted(by_household)
    if len(households) < 2:
        return {}
    histories = [[items for _day, items in sorted(by_household[h])] for h in households]
    params = ExploreParams(neighbours=min(EXPLORE_NEIGHBOURS, len(households) - 1))
    try:
        recommended = ExploreEngine(params).fit(histories).recommend(EXPLORE_K)
    except (ValueError, IndexError) as exc:  # too little data for the engine: lift alone then
        log.warning("explore recommendations unavailable this run: %s", exc)
        return {}
    return {
        household: [
            (
                codes[r.item],
                r.signal.value,
                codes[r.because] if r.because is not None else None,
                r.lift,
            )
            for r in recs
        ]
        for household, recs in zip(households, recommended, strict=True)
    }


def _taste(connection: Connection, household: str) -> dict[str | None, float]:
    """Return a factor per category from the household's answers: dismissals halve, acceptances raise."""
    rows = connection.execute(
        select(OFFERS.c.category, OFFERS.c.status).where(
            OFFERS.c.household_id == household, OFFERS.c.status.in_(["accepted", "ordered", "dismissed"])
        )
    ).all()
    factor: dict[str | None, float] = defaultdict(lambda: 1.0)
    for category, status in rows:
        factor[category] *= DISMISSED_FACTOR if status == "dismissed" else ACCEPTED_FACTOR
    return dict(factor)
