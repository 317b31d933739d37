"""Household: deterministic, physically consistent, and shaped like a real household's weeks."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

import pytest

from simulator.life import EXCLUDED, SCANNED, Action, ActionKind, Diet, Household, Profile, Shopping
from simulator.retailer import OrderLine, OrderStatus, RetailerSettings, SimulatedRetailer

START = date(2026, 1, 5)  # a Monday


def run(household: Household, days: int) -> list[Action]:
    actions: list[Action] = []
    for _ in range(days):
        day_actions, _truth = household.live()
        actions += day_actions
    return actions


def test_the_same_seed_gives_the_same_life_and_another_seed_another() -> None:
    first = run(Household(7, START), 60)
    again = run(Household(7, START), 60)
    other = run(Household(8, START), 60)

    assert first == again
    assert [(a.kind, a.code) for a in first] != [(a.kind, a.code) for a in other]


@pytest.mark.parametrize("seed", range(5))
def test_every_action_is_possible_at_the_fridge_in_time_order(seed: int) -> None:
    household = Household(seed, START)
    packs: Counter[str] = Counter()
    unopened: Counter[str] = Counter()
    last = None
    for action in run(household, 90):
        assert last is None or action.at >= last
        last = action.at
        match action.kind:
            case ActionKind.PUT_IN:
                packs[action.code] += 1
                unopened[action.code] += 1
            case ActionKind.OPEN:
                assert unopened[action.code] > 0, action
                unopened[action.code] -= 1
            case ActionKind.USE_UP | ActionKind.DISCARD:
                assert packs[action.code] > 0, action
                packs[action.code] -= 1
                unopened[action.code] = min(unopened[action.code], packs[action.code])
    assert packs == +household.stock()


@pytest.mark.parametrize("seed", range(5))
def test_what_was_bought_was_eaten_wasted_or_is_still_there(seed: int) -> None:
    household = Household(seed, START)
    run(household, 120)

    bought: Counter[str] = Counter()
    wasted: Counter[str] = Counter()
    eaten: dict[str, float] = {}
    for day in household.history:
        bought.update(day.bought)
        wasted.update(day.wasted)
        for code, amount in day.eaten.items():
            eaten[code] = eaten.get(code, 0.0) + amount
    left = household.history[-1].stock
    for code in bought:
        # Wasted packs may have been opened: eaten + the rest of the wasted ones + what is left.
        assert eaten.get(code, 0.0) + left.get(code, 0.0) <= bought[code] - 0 + 1e-6
        assert eaten.get(code, 0.0) + left.get(code, 0.0) + wasted[code] >= bought[code] - 1e-6
    assert sum(bought.values()) > 0
    assert sum(eaten.values()) > 0


def test_a_diet_keeps_its_excluded_categories_out_of_the_portfolio() -> None:
    for seed in range(10):
        household = Household(seed, START, profile=Profile(size=2, diet=Diet.VEGAN))
        assert not {p.category for p, _ in household.portfolio} & EXCLUDED[Diet.VEGAN]


def test_away_days_have_no_eating_and_no_shopping() -> None:
    household = Household(3, START, profile=Profile(holidays_per_year=40))
    run(household, 120)

    away = [day for day in household.history if day.away]
    assert away, "a household away 40 times a year was never away in 120 days"
    assert all(not day.eaten and not day.bought for day in away)


def test_weekends_eat_more_than_weekdays_and_guests_more_still() -> None:
    household = Household(11, START, profile=Profile(size=3, holidays_per_year=0, guest_days_per_month=3))
    run(household, 364)

    def mean(days: list[float]) -> float:
        return sum(days) / len(days)

    by_weekday: dict[int, list[float]] = {}
    for day in household.history:
        if not day.guests:
            by_weekday.setdefault(day.day.weekday(), []).append(sum(day.eaten.values()))
    with_guests = [sum(day.eaten.values()) for day in household.history if day.guests]
    assert mean(by_weekday[5]) > mean(by_weekday[0])
    assert with_guests
    assert mean(with_guests) > mean(by_weekday[0])


def test_tastes_drift_over_months() -> None:
    household = Household(5, START)
    before = {p.code: rate for p, rate in household.portfolio}
    run(household, 100)
    after = {p.code: rate for p, rate in household.portfolio}

    common = before.keys() & after.keys()
    assert common
    assert any(abs(before[c] - after[c]) > 1e-9 for c in common)


def test_lines_are_the_edge_scanners_grammar() -> None:
    from edge.scangrammar import parse_scan

    actions = run(Household(2, START), 30)
    for action in actions:
        if action.kind in SCANNED:
            parse_scan(action.line)  # raises on a line the agent would refuse
    pours = [a for a in actions if a.kind is ActionKind.POUR]
    assert pours, "nobody used part of a pack in 30 days"
    assert all(0 < a.left < 1 for a in pours)
    with pytest.raises(ValueError, match="not scanned"):
        _ = pours[0].line


def test_a_pack_goes_down_pour_by_pour_until_it_is_used_up_or_thrown_away() -> None:
    left: dict[int, float] = {}
    for action in run(Household(4, START), 60):
        match action.kind:
            case ActionKind.PUT_IN:
                left[action.pack] = 1.0
            case ActionKind.POUR | ActionKind.USE_UP | ActionKind.DISCARD:
                assert action.left <= left[action.pack]
                left[action.pack] = action.left
    assert len(left) > 50


def test_an_online_household_orders_and_puts_the_delivery_away_the_evening_it_comes() -> None:
    retailer = SimulatedRetailer(
        RetailerSettings(late_rate=0, failure_rate=0, out_of_stock_rate=0, substitution_rate=0)
    )
    household = Household(3, START, name="home-0001", shopping=Shopping.ONLINE, retailer=retailer)
    actions = run(household, 30)

    assert sum(day.shopping for day in household.history) == 1  # the first stock-up only
    assert retailer.orders, "an online household never ordered"
    ordered = sum(sum(day.ordered.values()) for day in household.history)
    assert ordered == sum(line.quantity for o in retailer.orders for line in o.lines)
    put_in = [a for a in actions if a.kind is ActionKind.PUT_IN and a.at.date() > START]
    delivered = {o.due.replace(tzinfo=None) for o in retailer.orders if o.status is OrderStatus.DELIVERED}
    assert put_in
    assert all(17 <= a.at.hour < 21 for a in put_in)  # the van comes in the evening
    assert {a.at.date() for a in put_in} <= {d.date() for d in delivered}


def test_a_failed_order_sends_the_household_to_the_shop_the_next_day() -> None:
    retailer = SimulatedRetailer(RetailerSettings(failure_rate=1.0))
    household = Household(3, START, name="home-0001", shopping=Shopping.ONLINE, retailer=retailer)
    run(household, 20)

    assert all(o.status is not OrderStatus.DELIVERED for o in retailer.orders)
    assert sum(day.shopping for day in household.history) > 1


def test_a_substitute_is_scanned_as_itself_and_eaten_in_place_of_the_ordered_product() -> None:
    retailer = SimulatedRetailer(RetailerSettings(failure_rate=0, out_of_stock_rate=0, substitution_rate=1.0))
    household = Household(8, START, name="home-0001", shopping=Shopping.PLANNER, retailer=retailer)
    household.live()  # the first day's stock-up at a shop
    product, _rate = household.portfolio[0]
    retailer.place("home-0001", [OrderLine(product.code, 2)], datetime(2026, 1, 6, 8))
    household.live()
    actions, _truth = household.live()  # delivered on the 7th

    (substitute,) = {line.code for o in retailer.orders for line in o.delivered}
    assert substitute != product.code
    assert [a.code for a in actions if a.kind is ActionKind.PUT_IN] == [substitute, substitute]
    assert household.stock()[product.code] >= 2  # counted as the product it stands in for


def test_a_planner_household_never_shops_after_its_first_day() -> None:
    household = Household(
        5,
        START,
        profile=Profile(holidays_per_year=0),
        name="home-0001",
        shopping=Shopping.PLANNER,
        retailer=SimulatedRetailer(),
    )
    run(household, 21)

    assert [day.shopping for day in household.history].count(True) == 1
    assert household.history[-1].wanted_missing, "with nobody ordering, the fridge should run dry"


def test_a_household_that_orders_needs_a_retailer() -> None:
    with pytest.raises(ValueError, match="needs a retailer"):
        Household(1, START, shopping=Shopping.ONLINE)
