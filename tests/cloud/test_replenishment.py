"""The reorder policy: due items, one basket per household, the waste cap, money, and groups."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.planning.forecast import Forecast
from cloud.planning.replenishment import PlanItems, PolicyParams, plan


def fc(rate: list[float], sd: list[float] | None = None) -> Forecast:
    r = np.asarray(rate, dtype=float)
    return Forecast(
        r, np.asarray(sd if sd is not None else [0.1] * len(rate)), np.ones_like(r), np.ones((len(r), 7))
    )


def items(
    household: list[int], stock: list[float], life: list[float] | None = None, **kwargs: object
) -> PlanItems:
    n = len(household)
    return PlanItems(
        np.asarray(household, dtype=np.int64),
        np.asarray(stock, dtype=float),
        np.zeros(n),
        np.asarray(life if life is not None else [30.0] * n),
        **kwargs,  # type: ignore[arg-type]
    )


def test_an_item_running_low_is_due_and_topped_up_for_the_cycle() -> None:
    result = plan(items([0, 1], [0.5, 20.0]), fc([1.0, 1.0]))
    assert list(result.due) == [True, False]
    # Lead 1.5 + cycle 7 days at 1 a day, with safety stock, less the half pack there.
    assert 8 <= result.quantity[0] <= 11
    assert result.quantity[1] == 0
    assert result.days_left[0, 1] == pytest.approx(0.5, abs=0.2)


def test_a_basket_takes_what_would_be_due_soon_and_leaves_the_rest() -> None:
    # Household 0: item 0 due now, item 1 due in about two days, item 2 well stocked.
    result = plan(items([0, 0, 0], [0.5, 4.6, 30.0]), fc([1.0, 1.0, 1.0]))
    assert list(result.quantity > 0) == [True, True, False]
    # Without a due item, the soon-due one waits.
    alone = plan(items([0], [4.6]), fc([1.0]))
    assert alone.quantity[0] == 0
    assert alone.reorder_in_days[0] > 0


def test_never_more_than_is_used_before_best_before() -> None:
    # A pack lasts ten days at 0.1 a day, but keeps only three: one pack at a time, no more.
    result = plan(items([0], [0.0], life=[3.0]), fc([0.1], [0.3]))
    assert result.quantity[0] == 1
    assert result.capped[0]
    # Two a day for three days, and three more eaten while the van comes: nine, not the cycle's 17.
    fast = plan(items([0], [0.0], life=[3.0]), fc([2.0], [0.3]))
    assert fast.quantity[0] == 9


def test_a_small_basket_waits_unless_something_runs_out_before_the_van() -> None:
    price = np.asarray([2.0, 2.0])
    params = PolicyParams(min_basket_value=30.0)
    waiting = plan(items([0, 1], [2.4, 0.0], price=price), fc([1.0, 1.0]), params)
    assert waiting.quantity[0] == 0  # due, but not urgent: the basket is too small
    assert waiting.quantity[1] > 0  # empty now: goes anyway


def test_the_monthly_budget_drops_the_least_urgent_lines() -> None:
    price = np.asarray([10.0, 10.0])
    params = PolicyParams(monthly_budget=100.0)
    result = plan(items([0, 0], [0.0, 1.0], price=price, spent=np.asarray([30.0])), fc([1.0, 1.0]), params)
    assert result.quantity[0] == 7  # the most urgent line, trimmed to the 70 left
    assert result.quantity[1] == 0


def test_an_item_of_a_well_stocked_group_waits() -> None:
    # Fish and chicken stand in for each other; the chicken is plentiful, so the fish can wait.
    group = np.asarray([7, 7], dtype=np.int64)
    grouped = plan(items([0, 0], [0.0, 10.0], group=group), fc([0.3, 0.3]))
    assert grouped.quantity[0] == 0
    alone = plan(items([0, 0], [0.0, 10.0]), fc([0.3, 0.3]))
    assert alone.quantity[0] > 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="service_level"):
        PolicyParams(service_level=1.0)
    with pytest.raises(ValueError, match="monthly_budget"):
        PolicyParams(monthly_budget=0)
