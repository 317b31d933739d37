"""The dashboard's pure helpers: expiry badges and the forecast chart's scale."""

from __future__ import annotations

import math
from datetime import date

import pytest

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
