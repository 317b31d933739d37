"""The consumption model: rates that follow the data, intermittent use, censored days, quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.planning.forecast import ForecastParams, days_until_empty, forecast, reorder_point, z_score


def one(usage: list[float], prior: float = 0.3, **kwargs: object) -> tuple[float, float]:
    result = forecast(
        np.asarray([usage]),
        np.asarray([0]),
        np.asarray([prior]),
        last_weekday=6,
        **kwargs,  # type: ignore[arg-type]
    )
    return float(result.rate[0]), float(result.sd[0])


def test_a_steady_use_is_learnt_whatever_the_prior() -> None:
    rate, sd = one([0.5] * 90, prior=2.0)
    assert rate == pytest.approx(0.5, abs=0.03)
    _rate, noisy_sd = one([0.0, 1.0] * 45, prior=2.0)
    assert sd < 0.5 * noisy_sd


def test_intermittent_use_gives_the_average_rate() -> None:
    rate, _sd = one([1.0 if day % 5 == 4 else 0.0 for day in range(120)])
    assert rate == pytest.approx(0.2, abs=0.05)


def test_recent_days_weigh_more_when_tastes_change() -> None:
    rate, _sd = one([1.0] * 60 + [0.2] * 60)
    assert rate < 0.35


def test_a_new_item_starts_from_the_prior_and_days_before_it_do_not_count() -> None:
    result = forecast(np.zeros((2, 30)), np.asarray([30, 25]), np.asarray([0.4, 0.4]), last_weekday=0)
    assert result.rate[0] == pytest.approx(0.4)  # not seen yet: the prior
    assert result.rate[1] < 0.4  # five quiet days of its own pull it down


def test_days_out_of_stock_say_nothing_about_the_appetite() -> None:
    usage = [0.5] * 40 + [0.0] * 15
    in_stock = np.asarray([[True] * 40 + [False] * 15])
    censored, _ = one(usage, in_stock=in_stock)
    naive, _ = one(usage)
    assert censored == pytest.approx(0.5, abs=0.05)
    assert naive < 0.35


def test_a_households_own_weekday_pattern_replaces_the_prior_after_six_weeks() -> None:
    # Monday first; the last column is a Sunday. Weekends twice the weekdays.
    week = [0.2, 0.2, 0.2, 0.2, 0.2, 0.4, 0.4]
    usage = np.asarray([week * 8])
    result = forecast(usage, np.asarray([0]), np.asarray([0.25]), last_weekday=6)
    assert result.weekday[0, 5] > 1.3 * result.weekday[0, 0]
    assert result.weekday[0].mean() == pytest.approx(1.0, abs=0.01)
    short = forecast(usage[:, -21:], np.asarray([0]), np.asarray([0.25]), last_weekday=6)
    assert np.allclose(short.weekday, 1.0)  # three weeks: the prior (flat)


def test_days_until_empty_are_ordered_and_handle_the_edges() -> None:
    days = days_until_empty(
        np.asarray([2.0, 0.0, 3.0]), np.asarray([0.5, 0.5, 0.0]), np.asarray([0.2, 0.2, 0.1])
    )
    p10, p50, p90 = days[0]
    assert p10 < p50 < p90
    assert p50 == pytest.approx(4.0, rel=0.05)
    assert list(days[1]) == [0.0, 0.0, 0.0]  # empty: out now
    assert np.isinf(days[2]).all()  # never used: never runs out


def test_the_reorder_point_covers_the_use_and_the_safety_stock() -> None:
    point = reorder_point(np.asarray([1.0]), np.asarray([0.5]), 4.0, 0.95)
    assert point[0] == pytest.approx(4.0 + 1.6449 * 0.5 * 2.0, abs=1e-3)
    assert z_score(0.5) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probability"):
        z_score(1.0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per item"):
        forecast(np.zeros((2, 5)), np.asarray([0]), np.asarray([0.1, 0.1]), last_weekday=0)
    with pytest.raises(ValueError, match="alpha_size"):
        ForecastParams(alpha_size=0)
