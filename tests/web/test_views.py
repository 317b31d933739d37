"""The dashboards' pure helpers: expiry badges, the forecast chart's scale, the retailer's moves
and its campaign chart's scale."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cloud.web.households import chart_scale, expiry
from cloud.web.retailers import campaign_chart_scale, moves

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


def test_alerts_are_those_raised_and_not_cleared(tmp_path: Path) -> None:
    from cloud.db.engine import create_db_engine, create_schema
    from cloud.ingest.ingestor import Ingestor
    from cloud.web.households import alerts
    from shared import topics
    from shared.clock import ManualClock
    from shared.messages import AlertCleared, AlertRaised, encode

    engine = create_db_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    create_schema(engine)
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

    def raised(seq: int, kind: str, subject: str, detail: str) -> AlertRaised:
        return AlertRaised(
            event_id=uuid.uuid4(),
            device_id="fridge-x",
            seq=seq,
            occurred_at=at + timedelta(minutes=seq),
            kind=kind,
            subject=subject,
            detail=detail,
            since=at + timedelta(minutes=seq),
        )

    events = [
        raised(1, "door_open", "door", "The door has been open for 3 minutes"),
        raised(2, "expiring", "lot:4", "Milk expires tomorrow"),
        AlertCleared(
            event_id=uuid.uuid4(),
            device_id="fridge-x",
            seq=3,
            occurred_at=at + timedelta(minutes=3),
            kind="door_open",
            subject="door",
        ),
        raised(4, "temperature_high", "probe:fridge", "The fridge is at 9 °C"),
    ]
    ingestor = Ingestor(engine, lambda _ack: None, ManualClock(at))
    ingestor.process([(topics.events("fridge-x"), encode(event)) for event in events])
    with engine.connect() as connection:
        shown = alerts(connection, "hh-fridge-x")
    assert [(a["kind"], a["severity"], a["detail"]) for a in shown] == [
        ("Fridge too warm", "expired", "The fridge is at 9 °C"),
        ("About to expire", "soon", "Milk expires tomorrow"),
    ]
    engine.dispose()
