"""The explore evaluation: items new to each household, our engine against popularity, and its tuning.

Only items a household has never bought are recommended, and only the items of its next basket that it
had never bought count (explore recall and NDCG, `evaluation.metrics`); households whose next
basket holds no new item are left out, as for the explore recall of `frigo eval baskets`.

`tune_offers` never reads the future: it cuts a validation split from the histories (each household's
last history basket is the target, the baskets before it the history), tries every combination of
`OFFERS_GRID` there and keeps the best explore recall@k (explore NDCG@k breaks ties). `evaluate_offers`
then fits on the full histories and scores the future baskets once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cloud.commerce.explore import ExploreEngine, ExploreParams, ExploreSignals
from evaluation.baskets import g_topfreq, validation_split
from evaluation.metrics import explore_ndcg, explore_recall

__all__ = [
    "OFFERS_GRID",
    "evaluate_offers",
    "explore_scores",
    "popular_unseen",
    "tune_offers",
]

# The validation search: every combination is tried (the weights only rescale each other, so
# combinations proportional to one already tried are skipped, and so is the number of neighbours when
# their weight is 0). One signal build per decay; the neighbour counts share it.
OFFERS_GRID: dict[str, tuple[float, ...]] = {
    "decay": (0.5, 0.7, 1.0),
    "neighbours": (100, 300),
    "copurchase_weight": (0.0, 0.25, 0.5, 1.0),
    "neighbours_weight": (0.0, 1.0),
    "popularity_weight": (0.0, 0.5, 1.0, 2.0),
}

Baskets = list[list[int]]
StepCallback = Callable[[str], None]
IntArray = NDArray[np.int64]


def _quiet(_step: str) -> None:
    """Ignore a progress step."""


def popular_unseen(histories: Sequence[Baskets], k: int) -> list[list[int]]:
    """Return each household's ``k`` items in most baskets overall that it has never bought (G-TopFreq
    skipping the household's own items; ties: smaller id first)."""
    ranking = g_topfreq(histories, len({i for baskets in histories for b in baskets for i in b}))
    result: list[list[int]] = []
    for baskets in histories:
        seen = {item for basket in baskets for item in basket}
        result.append(list(itertools.islice((item for item in ranking if item not in seen), k)))
    return result


def explore_scores(
    predictions: Sequence[Sequence[int]], truths: Sequence[Sequence[int]], pasts: Sequence[set[int]], k: int
) -> dict[str, float | int]:
    """Return the mean explore recall@k and NDCG@k over the households whose truth holds a new item."""
    recalls: list[float] = []
    ndcgs: list[float] = []
    for predicted, truth, past in zip(predictions, truths, pasts, strict=True):
        value = explore_recall(predicted, truth, past, k)
        if value is None:
            continue
        recalls.append(value)
        ndcgs.append(explore_ndcg(predicted, truth, past, k) or 0.0)
    n = len(recalls)
    return {
        "explore_recall": round(sum(recalls) / n, 4) if n else 0.0,
        "explore_ndcg": round(sum(ndcgs) / n, 4) if n else 0.0,
        "users": n,
    }


@dataclass(frozen=True)
class _Targets:
    """The households scored: their row in the histories, their explore items and true baskets."""

    rows: list[int]
    truths: list[list[int]]
    pasts: list[set[int]]

    @staticmethod
    def select(
        users: Sequence[str], histories: Sequence[Baskets], targets: Mapping[str, Sequence[int]]
    ) -> _Targets:
        """Pick the households with a history and a target holding an item they never bought."""
        rows: list[int] = []
        truths: list[list[int]] = []
        pasts: list[set[int]] = []
        for n, user in enumerate(users):
            truth = targets.get(user)
            if not histories[n] or not truth:
                continue
            past = {item for basket in histories[n] for item in basket}
            if set(truth) - past:
                rows.append(n)
                truths.append(list(truth))
                pasts.append(past)
        return _Targets(rows, truths, pasts)

    def score(self, predictions: Sequence[Sequence[int]], k: int) -> dict[str, float | int]:
        """Score the predictions (one per household of the histories) of the selected households."""
        return explore_scores([predictions[n] for n in self.rows], self.truths, self.pasts, k)

    def fast_scorer(self, vocabulary: IntArray) -> Callable[[IntArray, int], tuple[float, float]]:
        """Return a vectorised scorer of top-k item indices into ``vocabulary`` (households × k, -1 for
        none): the same explore recall and NDCG as `score`, unrounded, for the search's many trials."""
        index = {int(item): n for n, item in enumerate(vocabulary)}
        n_items = len(vocabulary)
        keys: list[int] = []
        sizes = np.zeros(len(self.rows), np.int64)
        for place, (truth, past) in enumerate(zip(self.truths, self.pasts, strict=True)):
            new = set(truth) - past
            sizes[place] = len(new)
            keys.extend(place * n_items + index[i] for i in new if i in index)
        wanted = np.unique(np.array(keys, np.int64))
        rows = np.array(self.rows, np.int64)

        def score(items: IntArray, k: int) -> tuple[float, float]:
            top = items[rows, :k]
            hits = (top >= 0) & np.isin(np.arange(len(rows))[:, None] * n_items + top, wanted)
            discount = 1 / np.log2(np.arange(top.shape[1]) + 2)
            ideal = np.cumsum(1 / np.log2(np.arange(k) + 2))[np.minimum(sizes, k) - 1]
            recall = hits.sum(axis=1) / sizes
            ndcg = (hits * discount).sum(axis=1) / ideal
            return float(recall.mean()), float(ndcg.mean())

        return score


def _weights(grid: Mapping[str, Sequence[float]]) -> list[tuple[float, float, float]]:
    """Return the grid's weight triples, without all-zero ones and ones proportional to an earlier one."""
    seen: set[tuple[float, ...]] = set()
    result: list[tuple[float, float, float]] = []
    for triple in itertools.product(
        grid["copurchase_weight"], grid["neighbours_weight"], grid["popularity_weight"]
    ):
        top = max(triple)
        if top <= 0:
            continue
        ratio = tuple(round(w / top, 9) for w in triple)
        if ratio not in seen:
            seen.add(ratio)
            result.append((float(triple[0]), float(triple[1]), float(triple[2])))
    return result


def tune_offers(
    history: Mapping[str, Baskets],
    k: int,
    grid: Mapping[str, Sequence[float]] = OFFERS_GRID,
    on_step: StepCallback = _quiet,
) -> dict[str, object]:
    """Search ``grid`` on the validation split of ``history``; return every trial and the best params."""
    started = time.monotonic()
    train, targets = validation_split(history)
    users = list(train)
    histories = [train[user] for user in users]
    selected = _Targets.select(users, histories, targets)
    if not selected.rows:
        raise ValueError(
            "no household has a last history basket holding an item it never bought before: "
            "there is nothing to validate on"
        )
    neighbour_counts = [int(n) for n in grid["neighbours"]]
    trials: list[dict[str, object]] = []
    best: tuple[float, float] | None = None
    chosen: ExploreParams | None = None
    decays = [float(d) for d in grid["decay"]]
    signals = ExploreSignals.build(histories, decays, neighbour_counts, on_step)
    score = selected.fast_scorer(signals.vocabulary)
    on_step(f"trying the weights on {len(selected.rows)} households")
    for decay, count, (copurchase, neighbours_weight, popularity) in itertools.product(
        decays, neighbour_counts, _weights(grid)
    ):
        if neighbours_weight == 0 and count != neighbour_counts[0]:
            continue  # the same ranking as with the first count
        params = ExploreParams(count, decay, copurchase, neighbours_weight, popularity)
        _, items = signals.pool.rank(params, k)
        recall, ndcg = score(items, k)
        trials.append(
            {
                "params": params.as_dict(),
                "validation": {"explore_recall": round(recall, 4), "explore_ndcg": round(ndcg, 4)},
            }
        )
        if best is None or (recall, ndcg) > best:
            best, chosen = (recall, ndcg), params
    if chosen is None or best is None:
        raise ValueError("the grid holds no combination of weights that are not all 0")
    on_step("popularity on the validation split")
    baseline = selected.score(popular_unseen(histories, k), k)
    return {
        "split": "each household's last history basket is the target; the baskets before it the history",
        "k": k,
        "validation_users": len(selected.rows),
        "grid": {name: list(values) for name, values in grid.items()},
        "trials": trials,
        "popularity": baseline,
        "chosen": chosen.as_dict(),
        "chosen_validation": {"explore_recall": round(best[0], 4), "explore_ndcg": round(best[1], 4)},
        "seconds": round(time.monotonic() - started, 1),
    }


def evaluate_offers(
    history: Mapping[str, Baskets],
    future: Mapping[str, Baskets],
    k: int,
    params: ExploreParams | None = None,
    on_step: StepCallback = _quiet,
) -> dict[str, object]:
    """Fit on ``history`` and score our engine and popularity on each household's first ``future`` basket."""
    started = time.monotonic()
    params = params or ExploreParams()
    users = list(history)
    histories = [history[user] for user in users]
    targets = {user: baskets[0] for user, baskets in future.items() if baskets}
    ours = ExploreEngine(params).fit(histories, on_step).recommend_items(k)
    on_step("popularity")
    popular = popular_unseen(histories, k)
    on_step("scoring")
    selected = _Targets.select(users, histories, targets)
    evaluated = {users[n] for n in selected.rows}
    return {
        "k": k,
        "users": {
            "history": len(history),
            "future": len(future),
            "evaluated": len(selected.rows),
            "future_without_history": sum(1 for user in targets if not history.get(user)),
            "future_without_new_items": sum(
                1 for user in targets if history.get(user) and user not in evaluated
            ),
        },
        "params": params.as_dict(),
        "models": {"ours": selected.score(ours, k), "popularity": selected.score(popular, k)},
        "seconds": round(time.monotonic() - started, 1),
    }
