"""Retailers' campaigns as A/B tests: variants, a holdout, results a retailer may see.

A campaign offers one product to the households that allow the retailer's offers. Each household
falls, the first time it is eligible, into one arm for good: the holdout (``control``, no offer)
with probability ``holdout_share``, else one of up to four variants, from a hash of the campaign
and the household, so the assignment is deterministic and needs no coordination between workers.
The offer engine (``cloud/commerce/offers.py``) makes the variants' offers under its usual rules (consent,
anti-echo, caps, quiet hours) while the budget lasts.

Results are aggregates only. Per arm: households, offers shown, accepted, and households that
bought the product within :data:`CONVERSION_WINDOW` of joining (the holdout's purchases are the
baseline), each rate with a 95 % Wilson interval. Conversion is made of purchases, so it counts
only the households whose ``analytics`` consent to the campaign's retailer, naming ``purchases``,
holds when the results are read (``consents.py``: analytics is what lets a household's purchases
count in the aggregates a retailer sees, and it is given to one retailer): its rate is over those
households alone, and a withdrawal takes a household's purchases out at once. Any figure over
fewer than :data:`MIN_HOUSEHOLDS` households is withheld (``None``), so no household can be singled
out. A variant beats the holdout if a two-sided two-proportion z-test on conversion gives p < 0.05;
no winner is named until every arm has ``min_sample`` households whose purchases count.

A household whose ``offers`` consent to the retailer is withdrawn leaves the retailer's running
campaigns (:func:`leave`, from ``cloud/commerce/withdrawal.py``): it is not in their figures any
more, and without the consent it is not assigned again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, func, insert, select

from cloud.commerce import consents
from cloud.db.engine import as_utc, insert_ignoring_duplicates
from cloud.db.tables import CAMPAIGN_ASSIGNMENTS, CAMPAIGNS, CATALOG_ITEMS, EVENTS, OFFERS
from cloud.errors import CloudError

MIN_HOUSEHOLDS = 20  # no figure over fewer households is shown to a retailer
CONVERSION_WINDOW = timedelta(days=14)
SIGNIFICANCE = 0.05
Z95 = 1.959963984540054
CONTROL = "control"


class CampaignError(CloudError, ValueError):
    """A campaign that cannot be made as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One version of the offer."""

    name: str
    message: str
    discount_percent: float


@dataclass(frozen=True, slots=True)
class Active:
    """A campaign running now, as the offer engine needs it."""

    id: str
    retailer_id: str
    name: str
    gtin: str
    holdout_share: float
    variants: tuple[Variant, ...]


def create(
    connection: Connection,
    retailer_id: str,
    name: str,
    gtin: str,
    variants: list[Variant],
    starts_at: datetime,
    ends_at: datetime,
    *,
    budget: int,
    holdout_share: float,
    min_sample: int,
    now: datetime,
) -> str:
    """Create a campaign of the retailer's; return its id."""
    if not 1 <= len(variants) <= 4:
        raise CampaignError("a campaign has 1 to 4 variants")
    if len({v.name for v in variants}) != len(variants) or any(v.name == CONTROL for v in variants):
        raise CampaignError(f"variants need distinct names, and {CONTROL!r} names the holdout")
    if ends_at <= starts_at:
        raise CampaignError("a campaign ends after it starts")
    sold = connection.execute(
        select(CATALOG_ITEMS.c.gtin).where(
            CATALOG_ITEMS.c.retailer_id == retailer_id, CATALOG_ITEMS.c.gtin == gtin
        )
    ).first()
    if sold is None:
        raise CampaignError(f"{gtin} is not in your catalog: PUT /retailer/catalog first")
    campaign_id = str(uuid.uuid4())
    connection.execute(
        insert(CAMPAIGNS).values(
            id=campaign_id,
            retailer_id=retailer_id,
            name=name,
            gtin=gtin,
            budget=budget,
            starts_at=starts_at,
            ends_at=ends_at,
            holdout_share=holdout_share,
            min_sample=min_sample,
            variants=json.dumps([dataclasses.asdict(v) for v in variants]),
            created_at=now,
        )
    )
    return campaign_id


def active(connection: Connection, retailer_id: str, now: datetime) -> list[Active]:
    """Return the retailer's campaigns running now with budget left."""
    rows = connection.execute(
        select(CAMPAIGNS).where(
            CAMPAIGNS.c.retailer_id == retailer_id,
            CAMPAIGNS.c.starts_at <= now,
            CAMPAIGNS.c.ends_at > now,
            CAMPAIGNS.c.stopped_at.is_(None),
        )
    ).all()
    running = []
    for row in rows:
        made = connection.execute(
            select(func.count()).select_from(OFFERS).where(OFFERS.c.campaign_id == row.id)
        )
        if int(made.scalar_one()) >= row.budget:
            continue
        running.append(
            Active(
                row.id,
                row.retailer_id,
                row.name,
                row.gtin,
                float(row.holdout_share),
                tuple(Variant(**v) for v in json.loads(row.variants)),
            )
        )
    return running


def arm_of(campaign: Active, household_id: str) -> str:
    """Return the household's arm: the same for every call, worker and run."""
    digest = hashlib.sha256(f"{campaign.id}:{household_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw < campaign.holdout_share:
        return CONTROL
    share = (draw - campaign.holdout_share) / (1 - campaign.holdout_share)
    return campaign.variants[min(int(share * len(campaign.variants)), len(campaign.variants) - 1)].name


def assign(connection: Connection, campaign: Active, household_id: str, now: datetime) -> str:
    """Record the household's arm the first time it is eligible; return the arm."""
    arm = arm_of(campaign, household_id)
    connection.execute(
        insert_ignoring_duplicates(connection.engine, CAMPAIGN_ASSIGNMENTS).values(
            campaign_id=campaign.id, household_id=household_id, arm=arm, assigned_at=now
        )
    )
    return arm


def leave(connection: Connection, household_id: str, retailer_id: str, now: datetime) -> int:
    """Take the household out of the retailer's running campaigns (not stopped, not ended); return
    from how many. Campaigns that are over keep their figures as they were."""
    running = select(CAMPAIGNS.c.id).where(
        CAMPAIGNS.c.retailer_id == retailer_id, CAMPAIGNS.c.stopped_at.is_(None), CAMPAIGNS.c.ends_at > now
    )
    removed = connection.execute(
        delete(CAMPAIGN_ASSIGNMENTS).where(
            CAMPAIGN_ASSIGNMENTS.c.household_id == household_id,
            CAMPAIGN_ASSIGNMENTS.c.campaign_id.in_(running),
        )
    )
    return int(removed.rowcount or 0)


def stop(connection: Connection, retailer_id: str, campaign_id: str, now: datetime) -> bool:
    """Stop the retailer's campaign; return whether it had one by that id."""
    table = CAMPAIGNS.c
    found = connection.execute(
        CAMPAIGNS.update()
        .where(table.id == campaign_id, table.retailer_id == retailer_id)
        .values(stopped_at=func.coalesce(table.stopped_at, now))
        .returning(table.id)
    ).first()
    return found is not None


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion with its 95 % Wilson interval; None figures are withheld."""

    count: int | None
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class ArmResult:
    """One arm's aggregates."""

    arm: str
    households: int | None
    offers: int | None
    accepted: Rate
    converted: Rate
    p_value: float | None  # conversion against the holdout; None for the holdout and withheld arms
    withheld: bool


@dataclass(frozen=True, slots=True)
class Results:
    """A campaign's results as its retailer may see them."""

    campaign_id: str
    arms: list[ArmResult]
    winner: str | None
    verdict: str


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """Return the 95 % Wilson score interval of successes / trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + Z95**2 / trials
    centre = (p + Z95**2 / (2 * trials)) / denominator
    spread = Z95 * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def two_proportion_p(a: int, n_a: int, b: int, n_b: int) -> float:
    """Return the two-sided p-value of a z-test that a/n_a and b/n_b are equal."""
    if n_a == 0 or n_b == 0:
        return 1.0
    pooled = (a + b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 1.0
    z = abs(a / n_a - b / n_b) / se
    return math.erfc(z / math.sqrt(2))


def results(connection: Connection, retailer_id: str, campaign_id: str, now: datetime) -> Results | None:
    """Return the campaign's aggregates as they may be shown at ``now``; None if the retailer has no
    such campaign."""
    campaign = connection.execute(
        select(CAMPAIGNS).where(CAMPAIGNS.c.id == campaign_id, CAMPAIGNS.c.retailer_id == retailer_id)
    ).first()
    if campaign is None:
        return None
    arms = [CONTROL] + [v["name"] for v in json.loads(campaign.variants)]
    assigned = connection.execute(
        select(
            CAMPAIGN_ASSIGNMENTS.c.household_id,
            CAMPAIGN_ASSIGNMENTS.c.arm,
            CAMPAIGN_ASSIGNMENTS.c.assigned_at,
        ).where(CAMPAIGN_ASSIGNMENTS.c.campaign_id == campaign_id)
    ).all()
    offered = connection.execute(
        select(OFFERS.c.arm, OFFERS.c.status).where(OFFERS.c.campaign_id == campaign_id)
    ).all()
    # Only the households whose purchases may count: the others' are not even read.
    allowing = consents.holding("analytics", now, recipient=retailer_id, naming="purchases")
    counted = {str(h) for h in connection.execute(allowing).scalars()}
    joined = {str(h): (str(arm), as_utc(at)) for h, arm, at in assigned}
    bought = connection.execute(
        select(EVENTS.c.household_id, EVENTS.c.occurred_at)
        .join(
            CAMPAIGN_ASSIGNMENTS,
            and_(
                CAMPAIGN_ASSIGNMENTS.c.household_id == EVENTS.c.household_id,
                CAMPAIGN_ASSIGNMENTS.c.campaign_id == campaign_id,
            ),
        )
        .where(
            EVENTS.c.type == "item_added",
            EVENTS.c.code == campaign.gtin,
            EVENTS.c.household_id.in_(allowing),
        )
    ).all()
    converted_households = {
        str(h)
        for h, at in bought
        if str(h) in counted and joined[str(h)][1] <= as_utc(at) <= joined[str(h)][1] + CONVERSION_WINDOW
    }
    per_arm = {arm: _Figures() for arm in arms}
    for household, (arm, _at) in joined.items():
        figures = per_arm.setdefault(arm, _Figures())
        figures.households += 1
        if household in counted:
            figures.measured += 1
            figures.converted += household in converted_households
    for arm, status in offered:
        if arm in per_arm:
            per_arm[arm].offers += 1
            per_arm[arm].accepted += status in ("accepted", "ordered")
    return _results(campaign_id, arms, per_arm, max(int(campaign.min_sample), MIN_HOUSEHOLDS))


@dataclass
class _Figures:
    """One arm's counts: households in it, those whose purchases count, and what they did."""

    households: int = 0
    measured: int = 0
    offers: int = 0
    accepted: int = 0
    converted: int = 0


def _results(campaign_id: str, arms: list[str], per_arm: dict[str, _Figures], enough: int) -> Results:
    """Return the results from each arm's counts, withholding what covers too few households."""
    control = per_arm[CONTROL]
    out: list[ArmResult] = []
    best: tuple[float, str] | None = None
    for arm in arms:
        figures = per_arm[arm]
        if figures.households < MIN_HOUSEHOLDS:
            empty = Rate(None, None, None, None)
            out.append(ArmResult(arm, None, None, empty, empty, None, True))
            continue
        accepted = _rate(figures.accepted, figures.offers)
        # Conversion is over the households whose purchases count: withheld below MIN_HOUSEHOLDS of
        # them, though the arm itself is shown.
        converted = (
            _rate(figures.converted, figures.measured)
            if figures.measured >= MIN_HOUSEHOLDS
            else Rate(None, None, None, None)
        )
        p_value = None
        if arm != CONTROL and min(figures.measured, control.measured) >= MIN_HOUSEHOLDS:
            ours, theirs = (figures.converted, figures.measured), (control.converted, control.measured)
            p_value = two_proportion_p(*ours, *theirs)
            lift = ours[0] / ours[1] - theirs[0] / theirs[1]
            if p_value < SIGNIFICANCE and lift > 0 and (best is None or lift > best[0]):
                best = (lift, arm)
        out.append(ArmResult(arm, figures.households, figures.offers, accepted, converted, p_value, False))
    short = [arm for arm in arms if per_arm[arm].measured < enough]
    if short:
        arms_short = f"arm {short[0]} has" if len(short) == 1 else f"arms {', '.join(short)} have"
        verdict = f"no winner yet: {arms_short} fewer than {enough} households whose purchases count"
        return Results(campaign_id, out, None, verdict)
    if best is None:
        return Results(campaign_id, out, None, "no variant converts better than the holdout at p < 0.05")
    return Results(campaign_id, out, best[1], f"{best[1]} converts better than the holdout (p < 0.05)")


def _rate(successes: int, trials: int) -> Rate:
    if trials == 0:
        return Rate(successes, None, None, None)
    low, high = wilson(successes, trials)
    return Rate(successes, round(successes / trials, 4), round(low, 4), round(high, 4))
