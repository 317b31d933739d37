"""The next-basket model: parameters, repeat and explore candidates, ranking, edge cases."""

from __future__ import annotations

import random

import pytest

from evaluation.nextbasket import BasketFeatures, NextBasketModel, NextBasketParams


def _households(count: int = 40) -> list[list[list[int]]]:
    """Tea drinkers (items 1-9) and coffee drinkers (items 11-19), ``count`` of each, 2-6 baskets each.

    Every household buys its staple (1 or 11) each time, plus two random items of its kind; tea
    drinkers also buy 5 each time, except household 0, new: one basket, without 5.
    """
    rng = random.Random(7)
    households: list[list[list[int]]] = []
    for n in range(2 * count):
        staple = 1 if n < count else 11
        baskets = []
        for _ in range(rng.randint(2, 6)):
            basket = {staple, *rng.sample(range(staple + 1, staple + 9), 2)}
            if staple == 1:
                basket.add(5)
            baskets.append(sorted(basket))
        households.append(baskets)
    households[0] = [[1, 2, 3]]
    return households


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decay", 0.0, "decay must be in (0, 1]"),
        ("decay", 1.5, "decay must be in (0, 1]"),
        ("neighbours", -1, "neighbours must be >= 0"),
        ("degree", 3, "degree must be 1 or 2"),
        ("l2", -1.0, "l2 must be >= 0"),
    ],
)
def test_params_refuse_values_that_cannot_work(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        NextBasketParams(**{field: value})  # type: ignore[arg-type]


def test_staples_come_first_and_a_new_household_explores_its_neighbours_item() -> None:
    # 80 households: enough next-basket examples for the repeat ranker to learn.
    model = NextBasketModel(NextBasketParams(neighbours=10)).fit(_households())

    predicted = model.recommend(4)

    assert len(predicted) == 80
    assert all(set(items[:2]) == {1, 5} for items in predicted[1:40])  # bought every time
    assert all(items[0] == 11 and max(items) < 20 for items in predicted[40:])
    # Household 0 bought 1, 2, 3 once; then comes what every neighbour buys.
    assert predicted[0][0] == 1
    assert predicted[0][3] == 5


def test_predictions_are_distinct_and_filled_with_popular_items() -> None:
    histories = [[[1], [1]], [[2], [2, 3]], [[3]]]

    predicted = NextBasketModel().fit(histories).recommend(5)

    for items in predicted:
        assert len(items) == len(set(items)) == 3  # only three items exist
        assert set(items) == {1, 2, 3}


def test_one_household_and_no_training_target_still_predict() -> None:
    predicted = NextBasketModel().fit([[[7, 8]]]).recommend(2)

    assert sorted(predicted[0]) == [7, 8]


def test_a_household_without_baskets_gets_the_popular_items() -> None:
    predicted = NextBasketModel().fit([[[1, 2], [1]], [[1, 3], [1, 2]], []]).recommend(2)

    assert predicted[2] == [1, 2]


def test_the_model_is_deterministic() -> None:
    first = NextBasketModel(NextBasketParams(neighbours=10)).fit(_households()).recommend(5)
    second = NextBasketModel(NextBasketParams(neighbours=10)).fit(_households()).recommend(5)

    assert first == second


def test_recommend_needs_a_fitted_model() -> None:
    with pytest.raises(RuntimeError, match="fit the model first"):
        NextBasketModel().recommend(3)


def test_features_built_with_other_settings_are_refused() -> None:
    features = BasketFeatures.build(_households(5), NextBasketParams(decay=0.5))

    with pytest.raises(ValueError, match="another decay or number of neighbours"):
        NextBasketModel(NextBasketParams(decay=0.9)).fit_features(features)
    # Other regression settings share the same features.
    assert NextBasketModel(NextBasketParams(decay=0.5, degree=1)).fit_features(features).recommend(1)


def test_with_few_examples_own_items_come_first_by_recency_weighted_frequency() -> None:
    # Three households: too few next-basket examples to train the rankers.
    histories = [[[1, 2], [1, 3], [1, 2]], [[1, 4], [4, 5]], [[6], [1, 6]]]

    predicted = NextBasketModel(NextBasketParams(decay=0.5)).fit(histories).recommend(4)
    counted = NextBasketModel(NextBasketParams(decay=1.0)).fit(histories).recommend(4)

    assert predicted[0][:3] == [1, 2, 3]
    assert predicted[1][:3] == [4, 5, 1]  # 5 is more recent than 1
    assert predicted[2][:2] == [6, 1]
    assert counted[1][:3] == [4, 1, 5]  # without decay 1 and 5 tie; the smaller id goes first
