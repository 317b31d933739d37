"""The offline alert rules of edge.rules: conditions, thresholds and edge-triggering."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from edge.rules import Alert, LotView, Rules, RulesConfig, RulesResult

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)


def lot(
    lot_id: int = 12,
    *,
    code: str = "7310865004703",
    name: str | None = "Milk",
    quantity: float = 1,
    best_before: date | None = None,
    perishable: bool = True,
) -> LotView:
    """Build a lot in the fridge with sensible defaults."""
    return LotView(
        lot_id=lot_id,
        code=code,
        name=name,
        quantity=quantity,
        unit="pcs",
        location="fridge",
        best_before=best_before,
        perishable=perishable,
    )


def expired_alert(lot_id: int, label: str, best_before: date) -> Alert:
    return Alert(
        kind="expired",
        subject=f"lot:{lot_id}",
        detail=f"{label} (lot {lot_id}) is past its best-before date {best_before.isoformat()}",
        since=datetime.combine(best_before + timedelta(days=1), datetime.min.time(), tzinfo=UTC),
    )


def expiring_alert(lot_id: int, label: str, best_before: date, within_days: int = 2) -> Alert:
    return Alert(
        kind="expiring",
        subject=f"lot:{lot_id}",
        detail=f"{label} (lot {lot_id}) is best before {best_before.isoformat()}: use it soon",
        since=datetime.combine(best_before - timedelta(days=within_days), datetime.min.time(), tzinfo=UTC),
    )


# --- configuration and inputs ---------------------------------------------------------------------


def test_defaults() -> None:
    assert RulesConfig() == RulesConfig(
        expiring_within_days=2,
        max_temperature_c=8.0,
        temperature_grace=timedelta(minutes=30),
        door_open_limit=timedelta(minutes=2),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expiring_within_days": -1},
        {"temperature_grace": timedelta(seconds=-1)},
        {"door_open_limit": timedelta(seconds=-1)},
    ],
)
def test_config_rejects_negative_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must"):
        RulesConfig(**kwargs)  # type: ignore[arg-type]


def test_naive_times_are_rejected() -> None:
    rules = Rules()
    naive = datetime(2026, 11, 20, 9, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.evaluate([], naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.temperature("fridge", 4.0, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.door(True, naive)


def test_nothing_to_report() -> None:
    assert Rules().evaluate([lot(best_before=None)], NOW) == RulesResult(raised=(), cleared=(), active=())


# --- best-before dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_left", "expected_kind"),
    [(-10, "expired"), (-1, "expired"), (0, "expiring"), (1, "expiring"), (2, "expiring"), (3, None)],
)
def test_date_boundaries(days_left: int, expected_kind: str | None) -> None:
    result = Rules().evaluate([lot(best_before=TODAY + timedelta(days=days_left))], NOW)
    assert [alert.kind for alert in result.raised] == ([expected_kind] if expected_kind else [])


def test_expiring_alert() -> None:
    best_before = date(2026, 11, 22)
    result = Rules().evaluate([lot(best_before=best_before)], NOW)
    expected = Alert(
        kind="expiring",
        subject="lot:12",
        detail="Milk (lot 12) is best before 2026-11-22: use it soon",
        since=datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert result == RulesResult(raised=(expected,), cleared=(), active=(expected,))


def test_expired_alert() -> None:
    result = Rules().evaluate([lot(best_before=date(2026, 11, 19))], NOW)
    expected = Alert(
        kind="expired",
        subject="lot:12",
        detail="Milk (lot 12) is past its best-before date 2026-11-19",
        since=datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert result == RulesResult(raised=(expected,), cleared=(), active=(expected,))


def test_unnamed_lot_is_named_by_its_code() -> None:
    result = Rules().evaluate([lot(7, code="4006381333931", name=None, best_before=TODAY)], NOW)
    assert [alert.detail for alert in result.raised] == [
        "4006381333931 (lot 7) is best before 2026-11-20: use it soon"
    ]


def test_expiring_within_days_is_configurable() -> None:
    rules = Rules(RulesConfig(expiring_within_days=0))
    lots = [lot(1, best_before=TODAY), lot(2, best_before=TODAY + timedelta(days=1))]
    result = rules.evaluate(lots, NOW)
    assert result.raised == (expiring_alert(1, "Milk", TODAY, within_days=0),)


def test_dates_are_utc_dates_of_now() -> None:
    # 23:30 in New York on the 20th is already the 21st in UTC, so a lot best before the 20th expired.
    new_york = timezone(timedelta(hours=-5))
    now = datetime(2026, 11, 20, 23, 30, tzinfo=new_york)
    result = Rules().evaluate([lot(best_before=date(2026, 11, 20))], now)
    assert result.raised == (expired_alert(12, "Milk", date(2026, 11, 20)),)


def test_date_alerts_are_edge_triggered() -> None:
    rules = Rules()
    lots = [lot(best_before=TODAY)]
    first = rules.evaluate(lots, NOW)
    second = rules.evaluate(lots, NOW + timedelta(hours=1))
    alert = expiring_alert(12, "Milk", TODAY)
    assert first == RulesResult(raised=(alert,), cleared=(), active=(alert,))
    assert second == RulesResult(raised=(), cleared=(), active=(alert,))


def test_expiring_turns_into_expired() -> None:
    rules = Rules()
    lots = [lot(best_before=TODAY)]
    rules.evaluate(lots, NOW)
    result = rules.evaluate(lots, NOW + timedelta(days=1))
    assert result == RulesResult(
        raised=(expired_alert(12, "Milk", TODAY),),
        cleared=(expiring_alert(12, "Milk", TODAY),),
        active=(expired_alert(12, "Milk", TODAY),),
    )


def test_corrected_date_clears_and_raises_again() -> None:
    rules = Rules()
    rules.evaluate([lot(best_before=TODAY)], NOW)
    result = rules.evaluate([lot(best_before=TODAY + timedelta(days=1))], NOW)
    new = expiring_alert(12, "Milk", TODAY + timedelta(days=1))
    assert result == RulesResult(raised=(new,), cleared=(expiring_alert(12, "Milk", TODAY),), active=(new,))


@pytest.mark.parametrize("quantity", [0, -1, 0.0])
def test_empty_lots_are_ignored(quantity: float) -> None:
    result = Rules().evaluate([lot(quantity=quantity, best_before=TODAY - timedelta(days=5))], NOW)
    assert result == RulesResult(raised=(), cleared=(), active=())


def test_lot_used_up_clears_its_alert() -> None:
    rules = Rules()
    rules.evaluate([lot(best_before=TODAY)], NOW)
    result = rules.evaluate([lot(quantity=0, best_before=TODAY)], NOW)
    assert result == RulesResult(raised=(), cleared=(expiring_alert(12, "Milk", TODAY),), active=())


def test_lot_gone_from_the_list_clears_its_alert() -> None:
    rules = Rules()
    rules.evaluate([lot(1, best_before=TODAY), lot(2, name="Ham", best_before=TODAY)], NOW)
    result = rules.evaluate([lot(2, name="Ham", best_before=TODAY)], NOW)
    assert result == RulesResult(
        raised=(),
        cleared=(expiring_alert(1, "Milk", TODAY),),
        active=(expiring_alert(2, "Ham", TODAY),),
    )


def test_non_perishable_lots_get_date_alerts_too() -> None:
    result = Rules().evaluate([lot(name="Rice", perishable=False, best_before=TODAY)], NOW)
    assert result.raised == (expiring_alert(12, "Rice", TODAY),)


# --- temperature ----------------------------------------------------------------------------------


FRIDGE_LOTS = [
    lot(12, code="7310865004703", name="milk"),
    lot(13, code="2000000000138", name="chicken"),
    lot(14, code="7310865004703", name="milk"),
    lot(15, code="7000000000015", name="rice", perishable=False),
    lot(16, code="7000000000016", name="fish", quantity=0),
]


def test_warm_probe_within_grace_is_not_an_alert() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    rules.temperature("fridge", 9.4, NOW + timedelta(minutes=20))
    result = rules.evaluate(FRIDGE_LOTS, NOW + timedelta(minutes=29, seconds=59))
    assert result == RulesResult(raised=(), cleared=(), active=())


def test_warm_probe_after_grace_raises() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    rules.temperature("fridge", 9.4, NOW + timedelta(minutes=20))
    result = rules.evaluate(FRIDGE_LOTS, NOW + timedelta(minutes=34))
    expected = Alert(
        kind="temperature_high",
        subject="probe:fridge",
        detail="Fridge at 9.4 °C for 34 min: perishable food may be unsafe: milk, chicken",
        since=NOW,
        perishable_codes=("2000000000138", "7310865004703"),
    )
    assert result == RulesResult(raised=(expected,), cleared=(), active=(expected,))


def test_grace_is_inclusive() -> None:
    rules = Rules()
    rules.temperature("fridge", 8.1, NOW)
    result = rules.evaluate([], NOW + timedelta(minutes=30))
    assert [alert.subject for alert in result.raised] == ["probe:fridge"]


def test_maximum_itself_is_not_warm() -> None:
    rules = Rules()
    rules.temperature("fridge", 8.0, NOW)
    assert rules.evaluate([], NOW + timedelta(hours=2)).active == ()


def test_warm_alert_without_perishable_food() -> None:
    rules = Rules()
    rules.temperature("28-000005e2fdc3", 12.0, NOW)
    result = rules.evaluate([lot(name="rice", perishable=False)], NOW + timedelta(minutes=45))
    assert result.raised == (
        Alert(
            kind="temperature_high",
            subject="probe:28-000005e2fdc3",
            detail="28-000005e2fdc3 at 12.0 °C for 45 min",
            since=NOW,
            perishable_codes=(),
        ),
    )


def test_cool_reading_ends_the_episode_and_clears() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    raised = rules.evaluate(FRIDGE_LOTS, NOW + timedelta(minutes=30)).raised
    rules.temperature("fridge", 8.0, NOW + timedelta(minutes=31))
    result = rules.evaluate(FRIDGE_LOTS, NOW + timedelta(minutes=32))
    assert result == RulesResult(raised=(), cleared=raised, active=())
    assert len(raised) == 1


def test_one_cool_reading_restarts_the_grace_period() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    rules.temperature("fridge", 7.5, NOW + timedelta(minutes=10))
    rules.temperature("fridge", 9.0, NOW + timedelta(minutes=15))
    assert rules.evaluate([], NOW + timedelta(minutes=44)).raised == ()
    result = rules.evaluate([], NOW + timedelta(minutes=45))
    assert [alert.since for alert in result.raised] == [NOW + timedelta(minutes=15)]


def test_temperature_alert_is_edge_triggered_and_kept_as_raised() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    first = rules.evaluate(FRIDGE_LOTS, NOW + timedelta(minutes=30))
    rules.temperature("fridge", 11.0, NOW + timedelta(minutes=40))
    second = rules.evaluate([], NOW + timedelta(minutes=50))
    assert second == RulesResult(raised=(), cleared=(), active=first.raised)
    assert first.raised[0].perishable_codes == ("2000000000138", "7310865004703")


def test_new_warm_episode_between_evaluations_is_a_new_alert() -> None:
    rules = Rules()
    rules.temperature("fridge", 9.0, NOW)
    old = rules.evaluate([], NOW + timedelta(minutes=30)).raised
    rules.temperature("fridge", 5.0, NOW + timedelta(minutes=31))
    rules.temperature("fridge", 9.0, NOW + timedelta(minutes=32))
    result = rules.evaluate([], NOW + timedelta(minutes=62))
    assert result.cleared == old
    assert [alert.since for alert in result.raised] == [NOW + timedelta(minutes=32)]
    assert result.active == result.raised


def test_probes_are_independent() -> None:
    rules = Rules(RulesConfig(max_temperature_c=-15.0, temperature_grace=timedelta(minutes=10)))
    rules.temperature("freezer", -10.0, NOW)
    rules.temperature("fridge", -18.0, NOW)
    result = rules.evaluate([], NOW + timedelta(minutes=10))
    assert [(alert.subject, alert.detail) for alert in result.raised] == [
        ("probe:freezer", "Freezer at -10.0 °C for 10 min")
    ]


# --- door -----------------------------------------------------------------------------------------


def test_door_open_up_to_the_limit_is_fine() -> None:
    rules = Rules()
    rules.door(True, NOW)
    assert rules.evaluate([], NOW + timedelta(minutes=2)).active == ()


def test_door_open_past_the_limit_raises_then_closing_clears() -> None:
    rules = Rules()
    rules.door(True, NOW)
    rules.door(True, NOW + timedelta(minutes=1))  # a repeated state does not restart the count
    opened = rules.evaluate([], NOW + timedelta(minutes=3, seconds=10))
    expected = Alert(
        kind="door_open",
        subject="door",
        detail="The door has been open for 3 min: close it to keep food cold",
        since=NOW,
    )
    assert opened == RulesResult(raised=(expected,), cleared=(), active=(expected,))
    assert rules.evaluate([], NOW + timedelta(minutes=4)) == RulesResult(
        raised=(), cleared=(), active=(expected,)
    )
    rules.door(False, NOW + timedelta(minutes=5))
    assert rules.evaluate([], NOW + timedelta(minutes=5)) == RulesResult(
        raised=(), cleared=(expected,), active=()
    )


def test_closing_resets_the_door_count() -> None:
    rules = Rules(RulesConfig(door_open_limit=timedelta(seconds=30)))
    rules.door(True, NOW)
    rules.door(False, NOW + timedelta(seconds=20))
    rules.door(True, NOW + timedelta(seconds=25))
    assert rules.evaluate([], NOW + timedelta(seconds=55)).active == ()
    result = rules.evaluate([], NOW + timedelta(seconds=56))
    assert [alert.since for alert in result.raised] == [NOW + timedelta(seconds=25)]


# --- all together ---------------------------------------------------------------------------------


def test_alerts_of_every_kind_in_evaluation_order() -> None:
    rules = Rules()
    rules.door(True, NOW)
    rules.temperature("fridge", 10.0, NOW)
    lots = [lot(1, name="Ham", best_before=TODAY - timedelta(days=1)), lot(2, best_before=TODAY)]
    result = rules.evaluate(lots, NOW + timedelta(hours=1))
    assert [(alert.kind, alert.subject) for alert in result.active] == [
        ("expired", "lot:1"),
        ("expiring", "lot:2"),
        ("temperature_high", "probe:fridge"),
        ("door_open", "door"),
    ]
    assert result.raised == result.active
    assert result.cleared == ()
