"""The dashboards' pure helpers: expiry badges, the forecast chart's scale, the retailer's moves
and its campaign chart's scale."""

from __future__ import annotations

import math
from datetime import date

import pytest

from cloud.retailerpages import campaign_chart_scale, moves
from cloud.web import chart_scale, expiry

TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("best_before", "badge", "text"),
    [
        (None, "none", "no date"),
        (date(2026, 11, 27), "expired", "expired 3 d ago"),
        (TODAY, "soon", "use today"),
        (date(2026, 12, 2), "soon", "2 d left"),
        (date(2026, 12, 3), "ok", "3 d left"),
    ],
)
def test_expiry_badges(best_before: date | None, badge: str, text: str) -> None:
    assert expiry(best_before, TODAY) == (badge, text)


def test_the_chart_scale_is_whole_weeks_from_two_to_six() -> None:
    assert chart_scale([]) == 14
    assert chart_scale([3.0, math.inf]) == 14
    assert chart_scale([15.2]) == 21
    assert chart_scale([100.0]) == 42


def test_the_retailer_page_offers_only_the_moves_the_status_allows() -> None:
    assert [m["label"] for m in moves("created")] == ["Accept", "Reject", "Cancel"]
    # A substitution needs its products: the API only.
    assert [m["type"] for m in moves("picking")] == ["dispatched", "cancelled"]
    assert [m["label"] for m in moves("dispatched")] == ["Deliver"]
    assert moves("delivered") == []
    assert moves("cancelled") == []


def test_the_campaign_chart_ends_at_the_tenth_above_every_interval() -> None:
    assert campaign_chart_scale([]) == 0.1
    assert campaign_chart_scale([0.03, 0.1]) == 0.1
    assert campaign_chart_scale([0.31, 0.479]) == 0.5
    assert campaign_chart_scale([1.0]) == 1.0
