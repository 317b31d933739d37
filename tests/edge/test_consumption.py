"""Consumption inference of edge.consumption: placing, taking out, putting back, and the windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.consumption import Consumed, ConsumptionConfig, Placed, ShelfTracker, Unmatched

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
MILK = "7310865004703"
BUTTER = "5740900400337"
JUICE = "7310070765840"


def at(seconds: float) -> datetime:
    """Return the time ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def tracker_with_milk(grams: float = 1030.0) -> ShelfTracker:
    """Return a tracker whose empty 'top' shelf got lot 1 (milk) placed at t=10 s."""
    tracker = ShelfTracker()
    assert tracker.weight("top", 0.0, at(0)) == []
    tracker.scanned_in(1, MILK, 1000.0, at(5))
    assert tracker.weight("top", grams, at(10)) == [Placed(lot_id=1, shelf_id="top", grams=grams)]
    return tracker


def consumed(lot_id: int, code: str, grams: float, taken: float, decided: float, returned: bool) -> Consumed:
    return Consumed(
        lot_id=lot_id, code=code, grams=grams, taken_at=at(taken), decided_at=at(decided), returned=returned
    )


# --- configuration --------------------------------------------------------------------------------


def test_defaults() -> None:
    assert ConsumptionConfig() == ConsumptionConfig(
        return_window=timedelta(minutes=5), noise_grams=5.0, placement_window=timedelta(seconds=60)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"return_window": timedelta(seconds=-1)},
        {"placement_window": timedelta(seconds=-1)},
        {"noise_grams": -0.1},
    ],
)
def test_config_rejects_negative_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        ConsumptionConfig(**kwargs)  # type: ignore[arg-type]


# --- readings and noise ---------------------------------------------------------------------------


def test_first_reading_is_the_starting_load() -> None:
    tracker = ShelfTracker()
    assert tracker.weight("top", 2500.0, at(0)) == []
    assert tracker.weight("top", 2400.0, at(1)) == [Unmatched(shelf_id="top", delta_grams=-100.0, at=at(1))]


def test_changes_below_noise_are_ignored_but_add_up() -> None:
    tracker = tracker_with_milk()
    assert tracker.weight("top", 1034.0, at(20)) == []
    assert tracker.weight("top", 1030.0 - 4.9, at(21)) == []
    # The reference stayed at 1030 g, so two small steps in the same direction are one real change.
    assert tracker.weight("top", 1038.0, at(22)) == [Unmatched(shelf_id="top", delta_grams=8.0, at=at(22))]


def test_noise_threshold_itself_is_a_change() -> None:
    tracker = ShelfTracker(ConsumptionConfig(noise_grams=10.0))
    tracker.weight("top", 100.0, at(0))
    assert tracker.weight("top", 109.0, at(1)) == []
    assert tracker.weight("top", 110.0, at(2)) == [Unmatched(shelf_id="top", delta_grams=10.0, at=at(2))]


def test_change_no_lot_explains_is_unmatched() -> None:
    tracker = ShelfTracker()
    tracker.weight("bottom", 0.0, at(0))
    assert tracker.weight("bottom", 420.0, at(1)) == [
        Unmatched(shelf_id="bottom", delta_grams=420.0, at=at(1))
    ]
    assert tracker.weight("bottom", 0.0, at(2)) == [
        Unmatched(shelf_id="bottom", delta_grams=-420.0, at=at(2))
    ]


# --- placing --------------------------------------------------------------------------------------


def test_placement_after_scan_in() -> None:
    tracker_with_milk(1030.0)


@pytest.mark.parametrize(
    ("increase", "placed"),
    [(1000.0, True), (1250.0, True), (750.0, True), (1251.0, False), (749.0, False)],
)
def test_placement_matches_unit_weight_within_a_quarter(increase: float, placed: bool) -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(1, MILK, 1000.0, at(1))
    expected = (
        Placed(lot_id=1, shelf_id="top", grams=increase)
        if placed
        else Unmatched(shelf_id="top", delta_grams=increase, at=at(2))
    )
    assert tracker.weight("top", increase, at(2)) == [expected]


def test_small_unit_matches_within_noise() -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(1, "chili", 8.0, at(1))
    assert tracker.weight("top", 13.0, at(2)) == [Placed(lot_id=1, shelf_id="top", grams=13.0)]


def test_lot_without_unit_weight_takes_any_increase() -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(3, "cheese", None, at(1))
    assert tracker.weight("top", 5321.0, at(2)) == [Placed(lot_id=3, shelf_id="top", grams=5321.0)]


def test_placement_on_any_shelf() -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.weight("bottom", 0.0, at(0))
    tracker.scanned_in(1, MILK, 1000.0, at(1))
    assert tracker.weight("bottom", 1030.0, at(2)) == [Placed(lot_id=1, shelf_id="bottom", grams=1030.0)]


def test_closest_scan_is_placed_first() -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(1, MILK, 1000.0, at(1))
    tracker.scanned_in(2, JUICE, 1100.0, at(2))
    # 1080 g fits both units within a quarter; the juice's 1100 g is closer.
    assert tracker.weight("top", 1080.0, at(3)) == [Placed(lot_id=2, shelf_id="top", grams=1080.0)]
    assert tracker.weight("top", 2100.0, at(4)) == [Placed(lot_id=1, shelf_id="top", grams=1020.0)]


def test_a_scan_places_one_item_only() -> None:
    tracker = tracker_with_milk()
    assert tracker.weight("top", 2060.0, at(20)) == [Unmatched(shelf_id="top", delta_grams=1030.0, at=at(20))]


@pytest.mark.parametrize(("seconds", "placed"), [(60.0, True), (60.001, False)])
def test_placement_window(seconds: float, placed: bool) -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(1, MILK, 1000.0, at(0))
    expected = (
        Placed(lot_id=1, shelf_id="top", grams=1030.0)
        if placed
        else Unmatched(shelf_id="top", delta_grams=1030.0, at=at(seconds))
    )
    assert tracker.weight("top", 1030.0, at(seconds)) == [expected]


def test_tick_forgets_expired_scans() -> None:
    tracker = ShelfTracker(ConsumptionConfig(placement_window=timedelta(seconds=10)))
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(1, MILK, 1000.0, at(0))
    assert tracker.tick(at(11)) == []
    # A reading stamped earlier no longer finds the scan: tick dropped it.
    assert tracker.weight("top", 1030.0, at(5)) == [Unmatched(shelf_id="top", delta_grams=1030.0, at=at(5))]


def test_each_scan_of_a_lot_is_an_item_of_its_own() -> None:
    tracker = ShelfTracker()
    tracker.weight("top", 0.0, at(0))
    tracker.scanned_in(5, "yoghurt", 150.0, at(1))
    tracker.scanned_in(5, "yoghurt", 150.0, at(2))
    assert tracker.weight("top", 160.0, at(3)) == [Placed(lot_id=5, shelf_id="top", grams=160.0)]
    assert tracker.weight("top", 320.0, at(4)) == [Placed(lot_id=5, shelf_id="top", grams=160.0)]
    assert tracker.weight("top", 160.0, at(10)) == []
    assert tracker.weight("top", 0.0, at(11)) == []
    assert tracker.tick(at(400)) == [
        consumed(5, "yoghurt", 160.0, taken=10, decided=400, returned=False),
        consumed(5, "yoghurt", 160.0, taken=11, decided=400, returned=False),
    ]


# --- taking out and putting back ------------------------------------------------------------------


def test_put_back_same_weight_is_not_consumed() -> None:
    tracker = tracker_with_milk()
    assert tracker.weight("top", 0.0, at(100)) == []
    assert tracker.weight("top", 1030.0, at(160)) == []
    assert tracker.tick(at(1000)) == []


def test_put_back_lighter_within_noise_is_not_consumed() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.weight("top", 1025.5, at(160)) == []
    assert tracker.tick(at(1000)) == []


def test_put_back_slightly_heavier_is_still_the_lot() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.weight("top", 1034.0, at(160)) == []
    assert tracker.weight("top", 0.0, at(200)) == []
    assert tracker.tick(at(501)) == [consumed(1, MILK, 1034.0, taken=200, decided=501, returned=False)]


def test_put_back_lighter_consumes_the_difference() -> None:
    tracker = tracker_with_milk()
    assert tracker.weight("top", 0.0, at(100)) == []
    assert tracker.weight("top", 780.0, at(160)) == [
        consumed(1, MILK, 250.0, taken=100, decided=160, returned=True)
    ]
    assert tracker.tick(at(1000)) == []


def test_put_back_at_the_end_of_the_window_counts() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.weight("top", 780.0, at(400)) == [
        consumed(1, MILK, 250.0, taken=100, decided=400, returned=True)
    ]


def test_never_put_back_is_consumed_in_full_when_the_window_ends() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.tick(at(400)) == []
    assert tracker.tick(at(400.5)) == [consumed(1, MILK, 1030.0, taken=100, decided=400.5, returned=False)]
    assert tracker.tick(at(1000)) == []


def test_taken_weight_is_the_measured_drop() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("top", 10.0, at(100))  # 1020 g taken: within 5 % of the lot's 1030 g
    assert tracker.tick(at(401)) == [consumed(1, MILK, 1020.0, taken=100, decided=401, returned=False)]


def test_put_back_after_the_window_is_unmatched() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    # The reading closes the window first: the lot is consumed in full, the put-back explains nothing.
    assert tracker.weight("top", 780.0, at(401)) == [
        consumed(1, MILK, 1030.0, taken=100, decided=401, returned=False),
        Unmatched(shelf_id="top", delta_grams=780.0, at=at(401)),
    ]


def test_put_back_after_a_tick_closed_the_window_is_unmatched() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.tick(at(401)) == [consumed(1, MILK, 1030.0, taken=100, decided=401, returned=False)]
    assert tracker.weight("top", 780.0, at(402)) == [Unmatched(shelf_id="top", delta_grams=780.0, at=at(402))]


def test_put_back_heavier_than_taken_is_not_the_lot() -> None:
    tracker = tracker_with_milk()
    tracker.weight("top", 0.0, at(100))
    assert tracker.weight("top", 1036.0, at(160)) == [
        Unmatched(shelf_id="top", delta_grams=1036.0, at=at(160))
    ]
    assert tracker.tick(at(401)) == [consumed(1, MILK, 1030.0, taken=100, decided=401, returned=False)]


def test_repeated_partial_consumption() -> None:
    tracker = tracker_with_milk(1000.0)
    assert tracker.weight("top", 0.0, at(100)) == []
    assert tracker.weight("top", 750.0, at(130)) == [
        consumed(1, MILK, 250.0, taken=100, decided=130, returned=True)
    ]
    assert tracker.weight("top", 0.0, at(3600)) == []
    assert tracker.weight("top", 500.0, at(3630)) == [
        consumed(1, MILK, 250.0, taken=3600, decided=3630, returned=True)
    ]
    assert tracker.tick(at(10_000)) == []


def test_two_lots_on_one_shelf_are_told_apart_by_weight() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, BUTTER, 250.0, at(20))
    assert tracker.weight("top", 1290.0, at(25)) == [Placed(lot_id=2, shelf_id="top", grams=260.0)]
    assert tracker.weight("top", 1035.0, at(100)) == []  # 255 g off: the butter, not the milk
    assert tracker.weight("top", 1235.0, at(130)) == [
        consumed(2, BUTTER, 55.0, taken=100, decided=130, returned=True)
    ]
    assert tracker.weight("top", 205.0, at(200)) == []  # 1030 g off: the milk
    assert tracker.tick(at(501)) == [consumed(1, MILK, 1030.0, taken=200, decided=501, returned=False)]


def test_drop_matching_no_lot_is_unmatched() -> None:
    tracker = tracker_with_milk(1030.0)
    # 930 g is 100 g off the milk's 1030 g, more than the 5 % (51.5 g) a take-out may differ by.
    assert tracker.weight("top", 100.0, at(100)) == [
        Unmatched(shelf_id="top", delta_grams=-930.0, at=at(100))
    ]
    assert tracker.tick(at(1000)) == []


def test_drop_of_two_lots_at_once_is_unmatched() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, BUTTER, 250.0, at(20))
    tracker.weight("top", 1280.0, at(25))
    assert tracker.weight("top", 0.0, at(100)) == [Unmatched(shelf_id="top", delta_grams=-1280.0, at=at(100))]


def test_drop_on_another_shelf_does_not_take_the_lot() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("bottom", 2000.0, at(0))
    assert tracker.weight("bottom", 970.0, at(100)) == [
        Unmatched(shelf_id="bottom", delta_grams=-1030.0, at=at(100))
    ]


def test_identical_lots_take_the_one_placed_first() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, MILK, 1000.0, at(20))
    tracker.weight("top", 2060.0, at(25))
    tracker.weight("top", 1030.0, at(100))
    assert [decision.lot_id for decision in tracker.tick(at(401)) if isinstance(decision, Consumed)] == [1]


def test_a_tie_goes_to_the_lot_opened_last() -> None:
    # Two full bottles the scale cannot tell apart: the household pours from the one it opened.
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, JUICE, 1000.0, at(20))
    tracker.weight("top", 2060.0, at(25))
    tracker.opened(2, at(30))
    tracker.weight("top", 1030.0, at(100))
    assert tracker.weight("top", 1830.0, at(130)) == [
        consumed(2, JUICE, 230.0, taken=100, decided=130, returned=True)
    ]
    # Opened later, the milk is the one poured from next, though the juice is lighter by a glass.
    tracker.opened(1, at(200))
    tracker.weight("top", 830.0, at(300))  # 1000 g off: 30 g from the milk's 1030, 200 from the juice's
    assert tracker.weight("top", 1630.0, at(330)) == [
        consumed(1, MILK, 200.0, taken=300, decided=330, returned=True)
    ]


def test_within_noise_of_the_closest_is_a_tie_and_beyond_it_weight_decides() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, JUICE, 1000.0, at(20))
    tracker.weight("top", 2064.0, at(25))  # the juice weighs 1034 g: 4 g off the milk, within noise
    tracker.opened(2, at(30))
    tracker.weight("top", 1034.0, at(100))  # 1030 g off: the milk exactly, but the juice is a tie
    # (the drop is what the shelf measured: 1030 g taken, 800 g put back)
    assert tracker.weight("top", 1834.0, at(130)) == [
        consumed(2, JUICE, 230.0, taken=100, decided=130, returned=True)
    ]
    # The juice now weighs 800 g: a 1030 g drop is the milk, whatever was opened.
    tracker.weight("top", 804.0, at(200))
    assert tracker.weight("top", 1634.0, at(230)) == [
        consumed(1, MILK, 200.0, taken=200, decided=230, returned=True)
    ]


def test_put_back_on_another_shelf_moves_the_lot() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("bottom", 0.0, at(0))
    tracker.weight("top", 0.0, at(100))
    assert tracker.weight("bottom", 830.0, at(130)) == [
        consumed(1, MILK, 200.0, taken=100, decided=130, returned=True)
    ]
    assert tracker.weight("bottom", 0.0, at(200)) == []
    assert tracker.tick(at(501)) == [consumed(1, MILK, 830.0, taken=200, decided=501, returned=False)]


def test_put_back_prefers_a_lot_taken_from_the_same_shelf() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("bottom", 0.0, at(0))
    tracker.scanned_in(2, JUICE, 1000.0, at(20))
    tracker.weight("bottom", 1000.0, at(25))
    tracker.weight("top", 0.0, at(100))
    tracker.weight("bottom", 0.0, at(101))
    # 990 g fits the juice (1000 g) more tightly, but the milk was taken from this shelf.
    assert tracker.weight("top", 990.0, at(130)) == [
        consumed(1, MILK, 40.0, taken=100, decided=130, returned=True)
    ]
    assert tracker.tick(at(402)) == [consumed(2, JUICE, 1000.0, taken=101, decided=402, returned=False)]


def test_put_back_fits_the_smallest_taken_lot() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, BUTTER, 250.0, at(20))
    tracker.weight("top", 1280.0, at(25))
    tracker.weight("top", 250.0, at(100))  # the milk
    tracker.weight("top", 0.0, at(101))  # the butter
    assert tracker.weight("top", 240.0, at(130)) == [
        consumed(2, BUTTER, 10.0, taken=101, decided=130, returned=True)
    ]
    assert tracker.tick(at(401)) == [consumed(1, MILK, 1030.0, taken=100, decided=401, returned=False)]


def test_equal_fits_go_to_the_lot_taken_first() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, JUICE, 1000.0, at(20))
    tracker.weight("top", 2060.0, at(25))
    tracker.weight("top", 1030.0, at(100))
    tracker.weight("top", 0.0, at(101))
    assert tracker.weight("top", 1030.0, at(130)) == []
    assert tracker.tick(at(402)) == [consumed(2, JUICE, 1030.0, taken=101, decided=402, returned=False)]


def test_unreturned_lots_are_reported_in_the_order_taken() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.scanned_in(2, BUTTER, 250.0, at(20))
    tracker.weight("top", 1280.0, at(25))
    tracker.weight("top", 1030.0, at(100))
    tracker.weight("top", 0.0, at(110))
    assert tracker.tick(at(411)) == [
        consumed(2, BUTTER, 250.0, taken=100, decided=411, returned=False),
        consumed(1, MILK, 1030.0, taken=110, decided=411, returned=False),
    ]


# --- scans against put-backs ----------------------------------------------------------------------


def test_scanned_lot_with_matching_unit_weight_wins_over_a_put_back() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("top", 0.0, at(100))
    tracker.scanned_in(2, MILK, 1000.0, at(110))
    assert tracker.weight("top", 1030.0, at(120)) == [Placed(lot_id=2, shelf_id="top", grams=1030.0)]
    assert tracker.weight("top", 1810.0, at(130)) == [
        consumed(1, MILK, 250.0, taken=100, decided=130, returned=True)
    ]


def test_put_back_wins_over_a_scanned_lot_without_unit_weight() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("top", 0.0, at(100))
    tracker.scanned_in(3, "cheese", None, at(110))
    assert tracker.weight("top", 780.0, at(120)) == [
        consumed(1, MILK, 250.0, taken=100, decided=120, returned=True)
    ]
    assert tracker.weight("top", 1180.0, at(130)) == [Placed(lot_id=3, shelf_id="top", grams=400.0)]


def test_put_back_wins_over_a_scanned_lot_whose_unit_weight_does_not_match() -> None:
    tracker = tracker_with_milk(1030.0)
    tracker.weight("top", 0.0, at(100))
    tracker.scanned_in(2, BUTTER, 250.0, at(110))
    assert tracker.weight("top", 780.0, at(120)) == [
        consumed(1, MILK, 250.0, taken=100, decided=120, returned=True)
    ]
    assert tracker.weight("top", 1030.0, at(130)) == [Placed(lot_id=2, shelf_id="top", grams=250.0)]
