"""The next-basket evaluation: our model against the popularity baselines, and its tuning.

The model learns from the histories only; `evaluate_baskets` scores its top k against the future
baskets. `tune_baskets` never reads the future: it cuts a validation split from the histories (each
user's last history basket is the target, the baskets before it the history) and picks the parameters
with the best recall@k there (NDCG@k breaks ties).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from evaluation.metrics import BasketScores, score_baskets
from evaluation.nextbasket import BasketFeatures, NextBasketModel, NextBasketParams

__all__ = [
    "TUNING_GRID",
    "evaluate_baskets",
    "g_topfreq",
    "p_topfreq",
    "predict_all",
    "tune_baskets",
    "validation_split",
]

# The validation search: every combination is tried. Decay 1.0 is plain counting; 300 neighbours
# was TIFU-KNN's best on Ta Feng, 100 and 1000 bracket it; degree 1 vs 2 and two penalties test the
# regressions' shape. (A first search with decay 0.8 too found it no better than 0.9 or 1.0.)
TUNING_GRID: dict[str, tuple[float, ...]] = {
    "decay": (0.9, 1.0),
    "neighbours": (100, 300, 1000),
    "degree": (1, 2),
    "l2": (1.0, 100.0),
}

Baskets = list[list[int]]
StepCallback = Callable[[str], None]


def _quiet(_step: str) -> None:
    """Ignore a progress step."""


def g_topfreq(histories: Sequence[Baskets], k: int) -> list[int]:
    """Return the ``k`` items in the most baskets overall (ties: smaller id first)."""
    counts = Counter(item for baskets in histories for basket in baskets for item in set(basket))
    return [item for item, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:k]]


def p_topfreq(histories: Sequence[Baskets], k: int) -> list[list[int]]:
    """Return each user's ``k`` items in most of their baskets, then the most popular ones.

    Ties between a user's items go to the globally more popular item.
    """
    popular = g_topfreq(histories, max(k, 1) * 2 + max((len(h) for h in histories), default=0))
    rank = {item: n for n, item in enumerate(popular)}
    result: list[list[int]] = []
    for baskets in histories:
        counts = Counter(item for basket in baskets for item in set(basket))
        own = sorted(counts, key=lambda item: (-counts[item], rank.get(item, len(rank)), item))[:k]
        taken = set(own)
        own += [item for item in popular if item not in taken][: k - len(own)]
        result.append(own)
    return result


def validation_split(history: Mapping[str, Baskets]) -> tuple[dict[str, Baskets], dict[str, list[int]]]:
    """Cut each user's last history basket off as a validation target (users with two or more baskets).

    Users with one basket keep it as history and have no target.
    """
    histories: dict[str, Baskets] = {}
    targets: dict[str, list[int]] = {}
    for user, baskets in history.items():
        if len(baskets) >= 2:
            histories[user] = baskets[:-1]
            targets[user] = baskets[-1]
        else:
            histories[user] = baskets
    return histories, targets


@dataclass(frozen=True)
class _Evaluated:
    """The users scored: their index in the histories, true baskets and past items."""

    index: list[int]
    truths: list[set[int]]
    pasts: list[set[int]]

    @staticmethod
    def select(
        users: Sequence[str], histories: Sequence[Baskets], targets: Mapping[str, list[int]]
    ) -> _Evaluated:
        """Pick the users with a history and a non-empty target."""
        index = [n for n, user in enumerate(users) if histories[n] and targets.get(user)]
        return _Evaluated(
            index,
            [set(targets[users[n]]) for n in index],
            [{item for basket in histories[n] for item in basket} for n in index],
        )

    def score(self, predictions: Sequence[Sequence[int]], k: int) -> BasketScores:
        """Score the predictions (one per user of the histories) of the evaluated users."""
        return score_baskets([predictions[n] for n in self.index], self.truths, self.pasts, k)


def predict_all(
    histories: Sequence[Baskets],
    k: int,
    params: NextBasketParams | None = None,
    on_step: StepCallback = _quiet,
) -> dict[str, list[list[int]]]:
    """Return the top-k predictions of our model and of the baselines for every user."""
    ours = NextBasketModel(params).fit(histories, on_step).recommend(k)
    on_step("baselines")
    popular = g_topfreq(histories, k)
    return {"ours": ours, "g_topfreq": [popular] * len(histories), "p_topfreq": p_topfreq(histories, k)}


def evaluate_baskets(
    history: Mapping[str, Baskets],
    future: Mapping[str, Baskets],
    k: int,
    params: NextBasketParams | None = None,
    on_step: StepCallback = _quiet,
) -> dict[str, object]:
    """Fit on ``history`` and score every model on each user's first ``future`` basket."""
    started = time.monotonic()
    params = params or NextBasketParams()
    users = list(history)
    histories = [history[user] for user in users]
    targets = {user: baskets[0] for user, baskets in future.items() if baskets}
    predictions = predict_all(histories, k, params, on_step)
    on_step("scoring")
    evaluated = _Evaluated.select(users, histories, targets)
    return {
        "k": k,
        "users": {
            "history": len(history),
            "future": len(future),
            "evaluated": len(evaluated.index),
            "future_without_history": sum(1 for user in targets if not history.get(user)),
        },
        "params": params.as_dict(),
        "models": {name: evaluated.score(predicted, k).as_dict() for name, predicted in predictions.items()},
        "seconds": round(time.monotonic() - started, 1),
    }


def tune_baskets(
    history: Mapping[str, Baskets],
    k: int,
    grid: Mapping[str, Sequence[float]] = TUNING_GRID,
    on_step: StepCallback = _quiet,
) -> dict[str, object]:
    """Search ``grid`` on the validation split of ``history``; return every trial and the best params."""
    started = time.monotonic()
    train, targets = validation_split(history)
    users = list(train)
    histories = [train[user] for user in users]
    evaluated = _Evaluated.select(users, histories, targets)
    if not evaluated.index:
        raise ValueError("no user has two or more history baskets: there is nothing to validate on")
    trials: list[dict[str, object]] = []
    best: tuple[float, float] | None = None
    chosen = NextBasketParams()
    for decay, neighbours in itertools.product(grid["decay"], grid["neighbours"]):
        base = NextBasketParams(decay=float(decay), neighbours=int(neighbours))
        features = BasketFeatures.build(histories, base, on_step)
        for degree, l2 in itertools.product(grid["degree"], grid["l2"]):
            params = NextBasketParams(base.decay, base.neighbours, int(degree), float(l2))
            on_step(f"trying {params.as_dict()}")
            predicted = NextBasketModel(params).fit_features(features).recommend(k)
            scores = evaluated.score(predicted, k)
            trials.append({"params": params.as_dict(), "validation": scores.as_dict()})
            if best is None or (scores.recall, scores.ndcg) > best:
                best, chosen = (scores.recall, scores.ndcg), params
    on_step("baselines on the validation split")
    baselines = {
        "g_topfreq": evaluated.score([g_topfreq(histories, k)] * len(histories), k).as_dict(),
        "p_topfreq": evaluated.score(p_topfreq(histories, k), k).as_dict(),
    }
    return {
        "split": "each user's last history basket is the target; the baskets before it are the history",
        "k": k,
        "validation_users": len(evaluated.index),
        "grid": {name: list(values) for name, values in grid.items()},
        "trials": trials,
        "baselines": baselines,
        "chosen": chosen.as_dict(),
        "seconds": round(time.monotonic() - started, 1),
    }
