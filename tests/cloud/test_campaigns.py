"""Campaigns as A/B tests: deterministic arms, results as aggregates with Wilson intervals and a
z-test, nothing over fewer than 20 households, and no winner before the minimum sample."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select
from sqlmodel import Session

from cloud.commerce import campaigns, consents
from cloud.commerce.campaigns import CONTROL, Active, Variant, arm_of, two_proportion_p, wilson
from cloud.commerce.catalog import upsert_catalog
from cloud.commerce.offers import run_offers
from cloud.commerce.withdrawal import withdraw_consent
from cloud.db.tables import CAMPAIGN_ASSIGNMENTS, CAMPAIGNS, OFFERS
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from shared import topics
from shared.clock import ManualClock
from shared.gtin import make_gtin13
from shared.messages import ItemAdded, encode
from tests.support.cloud import cloud_worker

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHOCOLATE, MILK = make_gtin13("400000000901"), make_gtin13("400000000902")


def test_wilson_interval_and_z_test_match_known_values() -> None:
    low, high = wilson(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    assert wilson(0, 10)[0] == 0.0
    assert wilson(0, 0) == (0.0, 1.0)
    # 60 % against 40 % of 100 each: z = 2.83, p = 0.0047.
    assert two_proportion_p(60, 100, 40, 100) == pytest.approx(0.00468, abs=1e-4)
    assert two_proportion_p(40, 100, 40, 100) == pytest.approx(1.0)


def test_arms_are_deterministic_and_in_proportion() -> None:
    campaign = Active("c-1", "shop", "Summer", CHOCOLATE, 0.2, (Variant("A", "a", 0), Variant("B", "b", 10)))
    arms = [arm_of(campaign, f"hh-{i}") for i in range(20_000)]
    assert arms == [arm_of(campaign, f"hh-{i}") for i in range(20_000)]  # the same every time
    shares = {arm: count / len(arms) for arm, count in Counter(arms).items()}
    assert shares[CONTROL] == pytest.approx(0.2, abs=0.01)
    assert shares["A"] == pytest.approx(0.4, abs=0.015)
    assert shares["B"] == pytest.approx(0.4, abs=0.015)
    other = Active("c-2", "shop", "Autumn", CHOCOLATE, 0.2, campaign.variants)
    assert [arm_of(other, f"hh-{i}") for i in range(200)] != arms[:200]  # campaigns draw apart


@pytest.fixture
def cloud(database_url: str) -> Iterator[CloudService]:
    with cloud_worker(database_url, ManualClock(NOW), "campaigns") as service:
        yield service


def shop(engine: Engine) -> tuple[str, str]:
    with Session(engine) as session:
        retailer, key = create_retailer(session, f"Sweet Shop {uuid.uuid4().hex[:4]}", NOW)
        session.commit()
        retailer_id = retailer.id
    with engine.begin() as connection:
        upsert_catalog(
            connection,
            retailer_id,
            [
                {
                    "gtin": CHOCOLATE,
                    "name": "Chocolate",
                    "price": 2.0,
                    "currency": "EUR",
                    "pack_size": 1,
                    "unit": "unit",
                    "category": "sweets",
                },
                {
                    "gtin": MILK,
                    "name": "Milk",
                    "price": 1.0,
                    "currency": "EUR",
                    "pack_size": 1,
                    "unit": "unit",
                    "category": "dairy",
                },
            ],
            NOW,
        )
    return retailer_id, key


def households(
    cloud: CloudService,
    retailer: str,
    arm_counts: dict[str, tuple[int, int]],
    campaign_id: str,
    *,
    measured: Callable[[str, int], bool] = lambda arm, i: True,
) -> list[str]:
    """Make households in each arm, ``converted`` of ``n`` of them buying chocolate after joining;
    the ``measured`` ones (by arm and index; all by default) allow the retailer analytics. Return
    them, arm by arm, converters first."""
    messages = []
    rows = []
    allowing = []
    for arm, (n, converted) in arm_counts.items():
        for i in range(n):
            device = f"{arm.lower()}-{i}-{campaign_id[:6]}"
            if measured(arm, i):
                allowing.append(f"hh-{device}")
            # Every household has one event (so it exists); converters buy the chocolate.
            code = CHOCOLATE if i < converted else MILK
            event = ItemAdded(
                event_id=uuid.uuid4(),
                device_id=device,
                seq=1,
                lot_id=1,
                occurred_at=NOW + timedelta(days=2),
                code=code,
                quantity=1,
            )
            messages.append((topics.events(device), encode(event)))
            rows.append(
                {"campaign_id": campaign_id, "household_id": f"hh-{device}", "arm": arm, "assigned_at": NOW}
            )
    cloud.ingestor.process(messages)
    with cloud.engine.begin() as connection:
        connection.execute(insert(CAMPAIGN_ASSIGNMENTS), rows)
        for household in allowing:
            consents.grant(connection, household, retailer, "analytics", NOW - timedelta(days=1))
    return [str(row["household_id"]) for row in rows]


def new_campaign(client: httpx.Client, *, min_sample: int = 20) -> dict[str, Any]:
    response = client.post(
        "/retailer/campaigns",
        json={
            "name": "Chocolate week",
            "gtin": CHOCOLATE,
            "variants": [
                {"name": "A", "message": "Try our chocolate"},
                {"name": "B", "message": "Treat yourself", "discount_percent": 20},
            ],
            "starts_at": (NOW - timedelta(days=1)).isoformat(),
            "ends_at": (NOW + timedelta(days=30)).isoformat(),
            "budget": 1000,
            "holdout_share": 0.2,
            "min_sample": min_sample,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_results_withhold_small_arms_and_name_no_winner_before_the_minimum_sample(
    cloud: CloudService,
) -> None:
    retailer, key = shop(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        campaign = new_campaign(client, min_sample=40)
        households(cloud, retailer, {CONTROL: (30, 3), "A": (30, 15), "B": (12, 6)}, campaign["id"])
        results = client.get(f"/retailer/campaigns/{campaign['id']}/results").json()
    arms = {arm["arm"]: arm for arm in results["arms"]}
    # B has 12 households: everything about it is withheld.
    assert arms["B"]["withheld"] is True
    assert arms["B"]["households"] is None
    assert arms["B"]["converted"] == {"count": None, "rate": None, "low": None, "high": None}
    assert arms["A"]["households"] == 30
    assert arms["A"]["converted"]["count"] == 15
    assert arms["A"]["converted"]["rate"] == 0.5
    low, high = wilson(15, 30)
    assert (arms["A"]["converted"]["low"], arms["A"]["converted"]["high"]) == (round(low, 4), round(high, 4))
    assert arms["A"]["p_value"] == pytest.approx(two_proportion_p(15, 30, 3, 30))
    assert arms["A"]["p_value"] < 0.05
    # A clearly beats the holdout, but the arms are under min_sample (40): no winner yet.
    assert results["winner"] is None
    assert "fewer than 40 households" in results["verdict"]


def test_a_winner_is_named_only_when_every_arm_is_large_enough_and_the_difference_holds(
    cloud: CloudService,
) -> None:
    retailer, key = shop(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        strong = new_campaign(client)
        households(cloud, retailer, {CONTROL: (40, 4), "A": (40, 20), "B": (40, 6)}, strong["id"])
        clear = client.get(f"/retailer/campaigns/{strong['id']}/results").json()
        weak = new_campaign(client)
        households(cloud, retailer, {CONTROL: (40, 8), "A": (40, 10), "B": (40, 9)}, weak["id"])
        unclear = client.get(f"/retailer/campaigns/{weak['id']}/results").json()
        # Another retailer sees nothing of it.
        _other, other_key = shop(cloud.engine)
        other = client.get(
            f"/retailer/campaigns/{strong['id']}/results", headers={"Authorization": f"Bearer {other_key}"}
        )
    assert clear["winner"] == "A"
    assert unclear["winner"] is None
    assert unclear["verdict"] == "no variant converts better than the holdout at p < 0.05"
    assert other.status_code == 404


def test_conversion_counts_only_the_households_that_allow_the_retailer_analytics(cloud: CloudService) -> None:
    retailer, key = shop(cloud.engine)
    other, _other_key = shop(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        campaign = new_campaign(client)

        def results() -> dict[str, dict[str, Any]]:
            found = client.get(f"/retailer/campaigns/{campaign['id']}/results").json()
            return {arm["arm"]: arm for arm in found["arms"]}

        # A: 30 households, the first 15 bought the chocolate; only the last 25 allow analytics
        # (10 of the buyers). B: 30, of which 12 allow it. The holdout: 30, all allowing it.
        made = households(
            cloud,
            retailer,
            {CONTROL: (30, 3), "A": (30, 15), "B": (30, 10)},
            campaign["id"],
            measured=lambda arm, i: arm == CONTROL or (arm == "A" and i >= 5) or (arm == "B" and i < 12),
        )
        arms = results()
        # A's conversion is over the 25 that allow it: 10 of them bought; the arm shows all 30.
        assert arms["A"]["households"] == 30
        assert arms["A"]["converted"]["count"] == 10
        assert arms["A"]["converted"]["rate"] == round(10 / 25, 4)
        assert arms["A"]["p_value"] == pytest.approx(two_proportion_p(10, 25, 3, 30))
        # B's 12 are too few to show a conversion: withheld, though the arm is not.
        assert arms["B"]["households"] == 30
        assert arms["B"]["converted"] == {"count": None, "rate": None, "low": None, "high": None}
        assert arms["B"]["p_value"] is None
        a_buyers = made[35:45]  # A's buyers that allow it
        with cloud.engine.begin() as connection:
            # Analytics for another retailer, or of other data, counts for none of this one's figures.
            for household in made[30:35]:  # A's buyers that do not allow this retailer analytics
                consents.grant(connection, household, other, "analytics", NOW - timedelta(days=1))
                consents.grant(
                    connection,
                    household,
                    retailer,
                    "analytics",
                    NOW - timedelta(days=1),
                    data_categories=["inventory"],
                )
        assert results()["A"]["converted"]["count"] == 10
        # A withdrawal takes the household's purchases out at once.
        with cloud.engine.begin() as connection:
            for household in a_buyers[:4]:
                withdraw_consent(connection, household, retailer, "analytics", NOW - timedelta(minutes=1))
        arms = results()
    assert arms["A"]["converted"]["count"] == 6
    assert arms["A"]["converted"]["rate"] == round(6 / 21, 4)
    assert arms["A"]["households"] == 30  # still in the arm: its offers consent is not withdrawn


def test_withdrawing_offers_takes_the_household_out_of_the_retailers_running_campaigns(
    cloud: CloudService,
) -> None:
    retailer, key = shop(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        running, over = new_campaign(client), new_campaign(client)
        made = households(cloud, retailer, {CONTROL: (2, 0), "A": (2, 1)}, running["id"])
    leaving, staying = made[2], made[3]
    with cloud.engine.begin() as connection:
        connection.execute(
            insert(CAMPAIGN_ASSIGNMENTS),
            [{"campaign_id": over["id"], "household_id": h, "arm": "A", "assigned_at": NOW} for h in made],
        )
        connection.execute(
            CAMPAIGNS.update().where(CAMPAIGNS.c.id == over["id"]).values(ends_at=NOW - timedelta(hours=1))
        )
        for household in made:
            consents.grant(connection, household, retailer, "offers", NOW - timedelta(days=1))
        # Withdrawing analytics leaves the assignment: it comes from the offers consent.
        withdraw_consent(connection, staying, retailer, "analytics", NOW)
        withdraw_consent(connection, leaving, retailer, "offers", NOW)

    def members(campaign_id: str) -> set[str]:
        with cloud.engine.connect() as connection:
            return set(
                connection.execute(
                    select(CAMPAIGN_ASSIGNMENTS.c.household_id).where(
                        CAMPAIGN_ASSIGNMENTS.c.campaign_id == campaign_id
                    )
                ).scalars()
            )

    assert members(running["id"]) == set(made) - {leaving}
    assert members(over["id"]) == set(made)  # a campaign that is over keeps its figures
    # The next offer run does not put it back: it has no offers consent any more.
    run_offers(cloud.engine, ManualClock(NOW))
    assert leaving not in members(running["id"])


def test_the_engine_offers_the_campaign_to_its_variants_and_never_to_the_holdout(cloud: CloudService) -> None:
    retailer, key = shop(cloud.engine)
    with httpx.Client(base_url=cloud.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        campaign = new_campaign(client)
        bad = client.post("/retailer/campaigns", json={**_spec(), "gtin": make_gtin13("400000000999")})
        assert bad.status_code == 422
        assert "not in your catalog" in bad.json()["detail"]
    homes = []
    messages = []
    for i in range(30):
        device = f"fan-{i}"
        event = ItemAdded(
            event_id=uuid.uuid4(),
            device_id=device,
            seq=1,
            lot_id=1,
            occurred_at=NOW - timedelta(days=20),
            code=MILK,
            quantity=1,
        )
        messages.append((topics.events(device), encode(event)))
        homes.append(f"hh-{device}")
    cloud.ingestor.process(messages)
    with cloud.engine.begin() as connection:
        for home in homes:
            consents.grant(connection, home, retailer, "offers", NOW - timedelta(days=1))
    clock = ManualClock(NOW)
    run_offers(cloud.engine, clock)
    with cloud.engine.connect() as connection:
        arms = dict(
            connection.execute(
                select(CAMPAIGN_ASSIGNMENTS.c.household_id, CAMPAIGN_ASSIGNMENTS.c.arm).where(
                    CAMPAIGN_ASSIGNMENTS.c.campaign_id == campaign["id"]
                )
            ).all()
        )
        offered = connection.execute(select(OFFERS).where(OFFERS.c.campaign_id == campaign["id"])).all()
    assert set(arms) == set(homes)
    assert {offer.household_id for offer in offered} == {h for h in homes if arms[h] != CONTROL}
    assert any(arm == CONTROL for arm in arms.values())
    for offer in offered:
        assert offer.arm == arms[offer.household_id]
        assert offer.kind == "campaign"
        assert offer.data_categories == ""
        message = {"A": "Try our chocolate", "B": "Treat yourself (20 % off)"}[offer.arm]
        assert offer.reason.startswith(message)
    with cloud.engine.connect() as connection:
        assert campaigns.results(connection, retailer, campaign["id"], NOW) is not None


def _spec() -> dict[str, Any]:
    return {
        "name": "Chocolate week",
        "gtin": CHOCOLATE,
        "variants": [{"name": "A", "message": "Try our chocolate"}],
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=30)).isoformat(),
        "budget": 1000,
    }
