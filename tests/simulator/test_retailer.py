"""The simulated retailer: seeded fates, lead times, failures, gaps and substitutions by category."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from simulator.catalog import CATALOG
from simulator.retailer import OrderLine, OrderStatus, RetailerSettings, SimulatedRetailer

AT = datetime(2026, 1, 5, 8, 0)
BY_CODE = {p.code: p for p in CATALOG}


def lines(count: int = 10) -> list[OrderLine]:
    return [OrderLine(p.code, 2) for p in CATALOG[:count]]


def settle(retailer: SimulatedRetailer, household: str, days: int) -> list[OrderStatus]:
    statuses = []
    for offset in range(days):
        statuses += [o.status for o in retailer.deliveries(household, AT.date() + timedelta(days=offset))]
    return statuses


def test_an_order_arrives_in_the_evening_after_the_lead_time_whole_when_nothing_goes_wrong() -> None:
    perfect = RetailerSettings(
        lead_time_days=2, late_rate=0, failure_rate=0, out_of_stock_rate=0, substitution_rate=0
    )
    retailer = SimulatedRetailer(perfect)
    order = retailer.place("home-0001", lines(), AT)

    assert retailer.deliveries("home-0001", date(2026, 1, 6)) == []
    (arrived,) = retailer.deliveries("home-0001", date(2026, 1, 7))
    assert arrived is order
    assert order.status is OrderStatus.DELIVERED
    assert 17 <= order.due.hour < 20
    came = [(d.code, d.quantity) for d in order.delivered]
    assert came == [(line.code, line.quantity) for line in order.lines]
    assert retailer.deliveries("home-0001", date(2026, 1, 8)) == []  # settled once


def test_failures_gaps_and_substitutions_happen_at_their_rates_and_stay_in_the_category() -> None:
    settings = RetailerSettings(failure_rate=0.2, out_of_stock_rate=0.1, substitution_rate=0.2)
    retailer = SimulatedRetailer(settings, seed=3)
    for n in range(500):
        retailer.place(f"home-{n % 5}", lines(), AT)
    for n in range(5):
        settle(retailer, f"home-{n}", 3)

    failed = sum(o.status is OrderStatus.FAILED for o in retailer.orders)
    assert 70 <= failed <= 130  # 20 % of 500
    delivered = [o for o in retailer.orders if o.status is OrderStatus.DELIVERED]
    kept = sum(len(o.delivered) for o in delivered) / sum(len(o.lines) for o in delivered)
    assert kept == pytest.approx(0.9, abs=0.03)
    came = [line for o in delivered for line in o.delivered]
    swapped = [line for line in came if line.substituted]
    assert len(swapped) / len(came) == pytest.approx(0.2, abs=0.03)
    assert all(BY_CODE[s.code].category == BY_CODE[s.ordered].category for s in swapped)


def test_the_same_seed_and_orders_give_the_same_fates() -> None:
    def fates(seed: int) -> list[tuple[str, tuple[tuple[str, str, int], ...], datetime]]:
        retailer = SimulatedRetailer(RetailerSettings(failure_rate=0.3, substitution_rate=0.3), seed=seed)
        for _ in range(20):
            retailer.place("home", lines(), AT)
        settle(retailer, "home", 4)
        return [
            (o.status, tuple((d.ordered, d.code, d.quantity) for d in o.delivered), o.due)
            for o in retailer.orders
        ]

    assert fates(1) == fates(1)
    assert fates(1) != fates(2)


def test_an_empty_order_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        SimulatedRetailer().place("home", [], AT)
