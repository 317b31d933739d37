"""Offers on SQLite and PostgreSQL: only under a consent that holds, each traced to it and explained;
needs and complements; never an echo; capped, quiet at night; answers change what comes next."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session

from cloud.commerce import consents, offers
from cloud.commerce.baskets import plan_cycle
from cloud.commerce.catalog import upsert_catalog
from cloud.commerce.offers import candidates, run_offers
from cloud.db.engine import as_utc
from cloud.db.tables import (
    CONSENTS,
    DEVICE_COMMANDS,
    HOUSEHOLDS,
    OFFERS,
    ORDER_LINES,
    ORDERS,
    PLANNED_ORDER_LINES,
)
from cloud.identity.retailers import create_retailer
from cloud.service import CloudService
from cloud.settings import CloudSettings
from shared import topics
from shared.clock import ManualClock
from shared.gtin import make_gtin13
from shared.messages import ItemAdded, ItemConsumed, OfferSent, decode_command, encode
from shared.mqtt import MqttSettings
from shared.vocabulary import DATA_CATEGORIES
from tests.support.factories import event_id
from tests.support.services import free_port

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAYS = 30
# Noon on the last day: not in anyone's quiet hours (UTC households).
NOON = START + timedelta(days=DAYS - 1, hours=4)
MILK, YOGURT, PASTA, PARMESAN, BASIL, BREAD = (make_gtin13(f"40000000070{i}") for i in range(6))
CATALOG = [
    (MILK, "Milk 1 l", "dairy", 1000, "ml"),
    (YOGURT, "Yogurt", "dairy", 1, "unit"),
    (PASTA, "Pasta", "dry", 1, "unit"),
    (PARMESAN, "Parmesan", "cheese", 1, "unit"),
    (BASIL, "Basil", "vegetables", 1, "unit"),
    (BREAD, "Bread", "bakery", 1, "unit"),
]


def life(
    device: str, *, milk: bool = True, pasta: bool = False, parmesan: bool = False
) -> list[tuple[str, bytes]]:
    """Thirty days of a fridge: a litre of milk every five days (200 ml a day, running low at the
    end, last bought four days before); pasta (and parmesan with it) every week if asked."""
    events: list[ItemAdded | ItemConsumed] = []

    def ids() -> dict[str, Any]:
        n = len(events) + 1
        return {"event_id": event_id(device, n, "offers"), "device_id": device, "seq": n, "lot_id": n}

    for day in range(DAYS):
        at = START + timedelta(days=day)
        if milk:
            if day % 5 == 0:
                bb = at.date() + timedelta(days=10)
                events.append(
                    ItemAdded(**ids(), occurred_at=at, code=MILK, quantity=1000, unit="ml", best_before=bb)
                )
            used = 100 if day == DAYS - 1 else 200
            events.append(
                ItemConsumed(
                    **ids(), occurred_at=at + timedelta(hours=3), code=MILK, quantity=used, unit="ml"
                )
            )
        if day % 7 == 1 and (pasta or parmesan):
            if pasta:
                events.append(ItemAdded(**ids(), occurred_at=at + timedelta(hours=1), code=PASTA, quantity=1))
            if parmesan:
                events.append(
                    ItemAdded(**ids(), occurred_at=at + timedelta(hours=1), code=PARMESAN, quantity=1)
                )
    return [(topics.events(device), encode(event)) for event in events]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.services import postgres_database

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('offers') / 'cloud.db'}"
        return
    with postgres_database() as url:
        yield url


class World:
    """A cloud with households, a shop with a catalog, and a clock; each test gets its own."""

    def __init__(self, url: str) -> None:
        self.clock = ManualClock(NOON)
        self.suffix = uuid.uuid4().hex[:6]
        settings = CloudSettings(
            database_url=url,
            mqtt=MqttSettings(host="127.0.0.1", port=free_port()),
            client_id=f"offers-{self.suffix}",
            auto_enroll=True,
            planning=False,
        )
        self.cloud = CloudService(settings, self.clock, serve_http=False)
        self.engine: Engine = self.cloud.engine
        with Session(self.engine) as session:
            shop, _key = create_retailer(session, f"Corner Shop {self.suffix}", NOON)
            session.commit()
            self.shop = shop.id
        items = [
            {
                "gtin": g,
                "name": n,
                "price": 1.5,
                "currency": "EUR",
                "pack_size": size,
                "unit": unit,
                "category": c,
            }
            for g, n, c, size, unit in CATALOG
        ]
        with self.engine.begin() as connection:
            upsert_catalog(connection, self.shop, items, NOON)

    def home(self, name: str, **habits: bool) -> str:
        """Add a fridge with its life; return its household's id."""
        device = f"{name}-{self.suffix}"
        self.cloud.ingestor.process(life(device, **habits))
        return f"hh-{device}"

    def consent(self, household: str, purpose: str = "offers", data: Sequence[str] | None = None) -> str:
        """Grant the shop the purpose, with ``data`` (the purpose's defaults without)."""
        with self.engine.begin() as connection:
            return consents.grant(
                connection,
                household,
                self.shop,
                purpose,
                self.clock.now() - timedelta(days=40),
                data_categories=data,
            )

    def offers_of(self, household: str) -> Sequence[Any]:
        with self.engine.connect() as connection:
            return connection.execute(
                select(OFFERS).where(OFFERS.c.household_id == household).order_by(OFFERS.c.created_at)
            ).all()

    def candidates(
        self, household: str, granted: Sequence[str] | None = None, strategy: offers.Strategy = "frigo"
    ) -> list[offers.Candidate]:
        """Return the household's candidates under ``granted`` (its offers grant's categories without;
        every category if it has none: what there would be to offer)."""
        with self.engine.connect() as connection:
            now = self.clock.now()
            if granted is None:
                scopes = consents.active_scopes(connection, "offers", now, recipient=self.shop)
                granted = (
                    sorted(scopes[(household, self.shop)][1]) if (household, self.shop) in scopes else None
                )
            lift = offers.LiftCache().get(connection, now)
            return candidates(
                connection, household, self.shop, lift, now, strategy, granted=granted or DATA_CATEGORIES
            )


@pytest.fixture
def world(database: str) -> Iterator[World]:
    with ExitStack() as stack:
        made = World(database)
        stack.callback(made.cloud.stop)
        yield made


def test_no_consent_no_offers(world: World) -> None:
    household = world.home("plain")
    assert world.candidates(household)  # there would be something to offer
    assert household not in run_offers(world.engine, world.clock).sent_to
    assert world.offers_of(household) == []


def test_a_need_is_offered_under_the_consent_with_its_reason_and_reaches_the_fridge(world: World) -> None:
    household = world.home("needy")
    consent = world.consent(household)
    assert household in run_offers(world.engine, world.clock).sent_to
    (offer,) = world.offers_of(household)
    assert (offer.gtin, offer.kind, offer.consent_id, offer.status) == (MILK, "need", consent, "sent")
    assert offer.reason.startswith("your Milk 1 l runs out on") or "has run out" in offer.reason
    assert offer.data_categories == "inventory,consumption"
    with world.engine.connect() as connection:
        payloads = connection.execute(select(DEVICE_COMMANDS.c.payload)).scalars().all()
    sent = [
        c for c in map(decode_command, payloads) if isinstance(c, OfferSent) and str(c.offer_id) == offer.id
    ]
    assert len(sent) == 1
    assert "Corner Shop" in sent[0].title
    assert "under the consent you gave" in sent[0].explanation


def test_after_consent_is_withdrawn_the_next_run_sends_nothing_and_every_offer_traces_to_a_consent(
    world: World,
) -> None:
    leaving, staying = world.home("leaving"), world.home("staying")
    world.consent(leaving)
    world.consent(staying)
    assert {leaving, staying} <= set(run_offers(world.engine, world.clock).sent_to)
    world.clock.advance(timedelta(minutes=5))
    with world.engine.begin() as connection:
        consents.withdraw(connection, leaving, world.shop, "offers", world.clock.now())
    for _ in range(20):  # twenty more days of runs: caps and cooldowns long past
        world.clock.advance(timedelta(days=1))
        run_offers(world.engine, world.clock)
    assert len(world.offers_of(leaving)) == 1  # only the one sent before the withdrawal
    assert len(world.offers_of(staying)) > 1
    with world.engine.connect() as connection:
        every = connection.execute(select(OFFERS)).all()
        assert every
        for offer in every:
            assert consents.was_active(connection, offer.consent_id, offer.household_id, offer.created_at)
    assert_within_their_grants(world.engine)


def test_complements_come_from_consenting_households_and_name_the_signal(world: World) -> None:
    others = [world.home(f"cook{i}", pasta=True, parmesan=True) for i in range(4)]
    world.home("loner", milk=False, parmesan=True)  # parmesan without pasta, no analytics consent
    household = world.home("pastalover", milk=False, pasta=True)
    world.consent(household, data=[*offers.NEED_DATA, *offers.HISTORY_DATA])
    assert world.candidates(household) == []  # no one consented to analytics: no statistics
    for other in others:
        world.consent(other, "analytics")
    (complement,) = [c for c in world.candidates(household) if c.kind == "complement"]
    assert complement.gtin == PARMESAN
    assert complement.reason.startswith("households who buy Pasta often buy Parmesan")
    assert complement.data == ("purchases",)
    # A household that lets its purchases count too is in cloud.commerce.explore's fit: the engine that
    # `frigo eval offers` measures ranks its new items, and names its signal.
    world.consent(household, "analytics")
    explored = {c.gtin: c for c in world.candidates(household) if c.kind == "complement"}[PARMESAN]
    assert explored.reason in (
        "households that buy what you buy also buy Parmesan",
        "Parmesan is what households are taking up lately",
    ) or explored.reason.startswith("households who buy Pasta go on to buy Parmesan")


def test_each_signal_reads_only_the_data_the_grant_names(world: World) -> None:
    for cook in [world.home(f"cook{i}", pasta=True, parmesan=True) for i in range(4)]:
        world.consent(cook, "analytics")
    household = world.home("scoped", pasta=True)  # its milk runs low; it buys pasta every week

    def found(
        granted: Sequence[str], strategy: offers.Strategy = "frigo"
    ) -> set[tuple[str, str, tuple[str, ...]]]:
        return {(c.gtin, c.kind, c.data) for c in world.candidates(household, granted, strategy)}

    default = consents.DEFAULT_CATEGORIES["offers"]
    assert set(default) == {"inventory", "consumption"}
    # A need reads the inventory and the consumption; a complement from its own baskets, its purchases.
    assert found(default) == {(MILK, "need", ("inventory", "consumption"))}
    assert found(["purchases"]) == {(PARMESAN, "complement", ("purchases",))}
    assert found([*default, "purchases"]) == {
        (MILK, "need", ("inventory", "consumption")),
        (PARMESAN, "complement", ("purchases",)),
    }
    assert found(["inventory"]) == set()  # a need reads the consumption too
    assert found(["orders"]) == set()
    # The popularity baseline: without the household's purchases, others' bestsellers as they are (it
    # cannot know the household buys pasta), from none of its data; with them, what it never bought.
    assert (PASTA, "complement", ()) in found(default, "popular")
    assert all(data == () for _g, _k, data in found(default, "popular"))
    assert PASTA not in {gtin for gtin, _k, _d in found(["purchases"], "popular")}
    assert all(data == ("purchases",) for _g, _k, data in found(["purchases"], "popular"))


def test_under_the_default_grant_no_offer_comes_from_the_purchases(world: World) -> None:
    for cook in [world.home(f"cook{i}", pasta=True, parmesan=True) for i in range(4)]:
        world.consent(cook, "analytics")
    household = world.home("defaults", milk=False, pasta=True)  # nothing runs out: a complement or none
    world.consent(household)  # offers, with the default data: inventory and consumption
    world.consent(household, "analytics")  # its baskets count in the statistics: not an offers grant
    there = world.candidates(household, DATA_CATEGORIES)
    assert PARMESAN in {c.gtin for c in there}  # there would be complements to offer
    assert {(c.kind, c.data) for c in there} == {("complement", ("purchases",))}
    for _day in range(5):
        run_offers(world.engine, world.clock)
        world.clock.advance(timedelta(days=1))
    assert world.offers_of(household) == []
    # Granted its purchases too, it gets the complement, which says what it was made from.
    consent = world.consent(household, data=[*consents.DEFAULT_CATEGORIES["offers"], "purchases"])
    assert household in run_offers(world.engine, world.clock).sent_to
    (offer,) = world.offers_of(household)
    assert (offer.gtin, offer.kind, offer.consent_id) == (there[0].gtin, "complement", consent)
    assert offer.data_categories == "purchases"
    assert_within_their_grants(world.engine)


def test_the_statistics_fit_only_the_baskets_analytics_grants_name(world: World) -> None:
    def pasta_baskets() -> int:
        with world.engine.connect() as connection:
            return offers.LiftCache().get(connection, world.clock.now()).count.get(PASTA, 0)

    cooks = [world.home(f"cook{i}", pasta=True, parmesan=True) for i in range(3)]
    before = pasta_baskets()  # other tests' households share the database
    for cook in cooks:
        world.consent(cook, "analytics", data=["inventory"])  # analytics, but not of its purchases
    assert pasta_baskets() == before
    world.consent(cooks[0], "analytics")  # the default: its purchases
    assert pasta_baskets() == before + 5  # its five weeks of pasta


def assert_within_their_grants(engine: Engine) -> None:
    """Check every offer's recorded data against the categories of the consent that allowed it."""
    with engine.connect() as connection:
        made = connection.execute(select(OFFERS.c.id, OFFERS.c.data_categories, OFFERS.c.consent_id)).all()
        granted = dict(connection.execute(select(CONSENTS.c.id, CONSENTS.c.data_categories)).all())
    assert made
    for offer_id, data, consent_id in made:
        used = {c for c in str(data).split(",") if c}
        assert used <= set(str(granted[consent_id]).split(",")), (offer_id, used, granted[consent_id])


def test_the_statistics_are_kept_between_runs_and_fitted_again_when_a_household_withdraws(
    world: World,
) -> None:
    cooks = [world.home(f"cook{i}", pasta=True, parmesan=True) for i in range(4)]
    household = world.home("pastalover", milk=False, pasta=True)
    world.consent(household)
    for cook in cooks:
        world.consent(cook, "analytics")
    cache, now = offers.LiftCache(), world.clock.now()
    with world.engine.connect() as connection:
        first = cache.get(connection, now)
        assert first.lift(PASTA, PARMESAN) > offers.MIN_LIFT
        assert cache.get(connection, now + timedelta(hours=5)) is first
    # The scheduler's runs use what the cache holds.
    run_offers(world.engine, world.clock, lift_cache=cache)
    assert cache.fits == 1
    # A withdrawal takes effect at the next run: fitted again without that household's baskets.
    with world.engine.begin() as connection:
        consents.withdraw(connection, cooks[0], world.shop, "analytics", now)
    with world.engine.connect() as connection:
        second = cache.get(connection, now + timedelta(hours=5))
        assert cache.fits == 2
        assert second.count[PASTA] < first.count[PASTA]
        # A household that starts consenting waits for the next fit, at most LIFT_MAX_AGE later.
        world.consent(household, "analytics")
        assert cache.get(connection, now + timedelta(hours=5)) is second
        third = cache.get(connection, now + timedelta(hours=5) + offers.LIFT_MAX_AGE)
        assert cache.fits == 3
        assert third.count[PASTA] > second.count[PASTA]
        # A clock that went back (a restored snapshot) fits again too.
        cache.get(connection, now)
        assert cache.fits == 4


def test_never_an_echo(world: World) -> None:
    household = world.home("echo")
    world.consent(household)
    assert [c.gtin for c in world.candidates(household)] == [MILK]
    # Just bought: the milk came in this morning.
    fresh = ItemAdded(
        event_id=uuid.uuid4(),
        device_id=household.removeprefix("hh-"),
        seq=10_000,
        lot_id=10_000,
        occurred_at=world.clock.now() - timedelta(hours=2),
        code=MILK,
        quantity=1000,
        unit="ml",
    )
    world.cloud.ingestor.process([(topics.events(fresh.device_id), encode(fresh))])
    assert world.candidates(household) == []


def test_nothing_on_order_and_nothing_twice_within_the_cooldown(world: World) -> None:
    ordered, offered = world.home("ordered"), world.home("offered")
    for household in (ordered, offered):
        world.consent(household)
    with world.engine.begin() as connection:
        order_id = str(uuid.uuid4())
        now = world.clock.now()
        connection.execute(
            insert(ORDERS).values(
                id=order_id,
                household_id=ordered,
                retailer_id=world.shop,
                status="created",
                version=1,
                currency="EUR",
                total=1.5,
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            insert(ORDER_LINES).values(
                order_id=order_id, gtin=MILK, name="Milk 1 l", quantity=1, unit_price=1.5
            )
        )
    assert world.candidates(ordered) == []
    sent_to = run_offers(world.engine, world.clock).sent_to
    assert offered in sent_to  # its milk
    assert ordered not in sent_to
    world.clock.advance(timedelta(days=2))
    assert all(c.gtin != MILK for c in world.candidates(offered))  # offered two days ago


def test_capped_each_week_and_none_in_quiet_hours(world: World) -> None:
    household = world.home("busy", pasta=True)
    for cook in [world.home(f"sous{i}", pasta=True, parmesan=True) for i in range(3)]:
        world.consent(cook, "analytics")
    world.consent(household, data=DATA_CATEGORIES)
    assert {c.gtin for c in world.candidates(household)} == {MILK, PARMESAN}  # two to offer
    with world.engine.begin() as connection:
        connection.execute(
            update(HOUSEHOLDS).where(HOUSEHOLDS.c.id == household).values(timezone="Asia/Tokyo")
        )
    # Noon UTC is 21:00 in Tokyo: quiet.
    run = run_offers(world.engine, world.clock, weekly_cap=1)
    assert household not in run.sent_to
    assert run.quiet >= 1
    with world.engine.begin() as connection:
        connection.execute(update(HOUSEHOLDS).where(HOUSEHOLDS.c.id == household).values(timezone="UTC"))
    for _hour in range(24 * 6):  # six days of hourly runs: one offer, though two are there to make
        run_offers(world.engine, world.clock, weekly_cap=1)
        world.clock.advance(timedelta(hours=1))
    assert len(world.offers_of(household)) == 1
    world.clock.advance(timedelta(days=1, hours=1))  # a week after the first
    while world.clock.now().hour < 8 or world.clock.now().hour >= 21:
        world.clock.advance(timedelta(hours=1))
    run_offers(world.engine, world.clock, weekly_cap=1)
    sent = world.offers_of(household)
    assert len(sent) == 2
    assert {offer.gtin for offer in sent} == {MILK, PARMESAN}
    assert all(8 <= as_utc(offer.created_at).hour < 21 for offer in sent)


def test_not_this_category_removes_it_from_the_next_hundred_candidates(world: World) -> None:
    household = world.home("nodairy")
    world.consent(household)
    run_offers(world.engine, world.clock)
    (milk,) = world.offers_of(household)
    assert milk.category == "dairy"
    with world.engine.begin() as connection:
        assert offers.answer(connection, household, milk.id, "not_this_category", world.clock.now())
    seen: list[str | None] = []
    while len(seen) < 100:
        batch = world.candidates(household)
        seen += [c.category for c in batch] or [None]
        run_offers(world.engine, world.clock)
        world.clock.advance(timedelta(hours=6))
    assert "dairy" not in seen
    assert all(offer.category != "dairy" for offer in world.offers_of(household)[1:])
    with pytest.raises(offers.OfferError, match="answered already"), world.engine.begin() as connection:
        offers.answer(connection, household, milk.id, "accepted", world.clock.now())


def test_dismissals_lower_a_category_and_an_accepted_offer_goes_into_the_next_basket(world: World) -> None:
    household = world.home("learner", pasta=True)
    cooks = [world.home(f"chef{i}", pasta=True, parmesan=True) for i in range(3)]
    world.consent(household, data=DATA_CATEGORIES)
    for cook in cooks:
        world.consent(cook, "analytics")
    before = {c.gtin: c.score for c in world.candidates(household)}
    assert MILK in before
    run_offers(world.engine, world.clock)
    (first,) = world.offers_of(household)
    with world.engine.begin() as connection:
        offers.answer(connection, household, first.id, "dismissed", world.clock.now())
    after = {c.gtin: c.score for c in world.candidates(household)}
    category = {g: c for g, _n, c, _s, _u in CATALOG}
    for gtin, score in after.items():
        if category[gtin] == first.category:
            assert score == pytest.approx(before[gtin] * offers.DISMISSED_FACTOR)

    world.clock.advance(timedelta(days=1))
    run_offers(world.engine, world.clock)
    second = world.offers_of(household)[-1]
    assert second.id != first.id
    with world.engine.begin() as connection:
        offers.answer(connection, household, second.id, "accepted", world.clock.now())
    plan_cycle(world.engine, world.clock, 900.0)
    with world.engine.connect() as connection:
        ordered = connection.execute(select(OFFERS).where(OFFERS.c.id == second.id)).one()
        lines = connection.execute(
            select(PLANNED_ORDER_LINES).where(PLANNED_ORDER_LINES.c.order_id == ordered.planned_order_id)
        ).all()
    assert ordered.status == "ordered"
    assert any(line.code == second.gtin and "you accepted the offer" in line.reason for line in lines)


def test_an_answer_on_the_fridge_is_applied_like_one_through_the_api(world: World) -> None:
    from cloud.commerce.answers import apply_answers
    from shared.messages import OfferAnswered

    household = world.home("fridgeside")
    world.consent(household)
    run_offers(world.engine, world.clock)
    (offer,) = world.offers_of(household)
    device = household.removeprefix("hh-")
    answered = OfferAnswered(
        event_id=uuid.uuid4(),
        device_id=device,
        seq=5_000,
        occurred_at=world.clock.now(),
        offer_id=uuid.UUID(offer.id),
        answer="not_this_category",
    )
    world.cloud.ingestor.process([(topics.events(device), encode(answered))])
    apply_answers(world.engine, world.clock.now())
    (after,) = world.offers_of(household)
    assert after.status == "not_this_category"
    assert all(c.category != offer.category for c in world.candidates(household))
