"""Top-k metrics of predicted baskets, per household and averaged over households.

For one household with predicted list P (duplicates dropped, first k kept), true next basket T (a set)
and past items H (everything in its history):

- recall@k = |P ∩ T| / |T|
- NDCG@k = DCG / IDCG with binary relevance: DCG = Σ 1/log2(r + 1) over the ranks r (1-based) of the
  hits in P, IDCG the same for min(k, |T|) hits at ranks 1, 2, ...
- hit@k = 1 if |P ∩ T| ≥ 1; its mean over households is the PHR@k (personal hit ratio)
- repeat recall = |P ∩ T ∩ H| / |T ∩ H|, only for households with T ∩ H non-empty
- explore recall = |P ∩ (T − H)| / |T − H|, only for households with T − H non-empty
- explore NDCG = NDCG@k of P against T − H (the same formula), only for households with T − H non-empty

Every figure is the plain mean over the households it is defined for.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

__all__ = [
    "BasketScores",
    "explore_ndcg",
    "explore_recall",
    "hit",
    "ndcg",
    "recall",
    "repeat_recall",
    "score_baskets",
]

Item = TypeVar("Item")


def _top(predicted: Iterable[Item], k: int) -> list[Item]:
    """Return the first ``k`` distinct predictions."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return list(dict.fromkeys(predicted))[:k]


def recall(predicted: Sequence[Item], truth: Collection[Item], k: int) -> float:
    """Return the share of the true basket found in the top ``k`` predictions."""
    wanted = set(truth)
    if not wanted:
        raise ValueError("the true basket is empty: recall is undefined")
    return sum(1 for item in _top(predicted, k) if item in wanted) / len(wanted)


def ndcg(predicted: Sequence[Item], truth: Collection[Item], k: int) -> float:
    """Return the NDCG of the top ``k`` predictions with binary relevance."""
    wanted = set(truth)
    if not wanted:
        raise ValueError("the true basket is empty: NDCG is undefined")
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(_top(predicted, k)) if item in wanted)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return dcg / ideal


def hit(predicted: Sequence[Item], truth: Collection[Item], k: int) -> bool:
    """Return whether any of the top ``k`` predictions is in the true basket."""
    wanted = set(truth)
    return any(item in wanted for item in _top(predicted, k))


def repeat_recall(
    predicted: Sequence[Item], truth: Collection[Item], past: Collection[Item], k: int
) -> float | None:
    """Return the recall on the true items bought before, or None if there are none."""
    repeats = set(truth) & set(past)
    return recall(predicted, repeats, k) if repeats else None


def explore_recall(
    predicted: Sequence[Item], truth: Collection[Item], past: Collection[Item], k: int
) -> float | None:
    """Return the recall on the true items never bought before, or None if there are none."""
    explores = set(truth) - set(past)
    return recall(predicted, explores, k) if explores else None


def explore_ndcg(
    predicted: Sequence[Item], truth: Collection[Item], past: Collection[Item], k: int
) -> float | None:
    """Return the NDCG against the true items never bought before, or None if there are none."""
    explores = set(truth) - set(past)
    return ndcg(predicted, explores, k) if explores else None


@dataclass(frozen=True)
class BasketScores:
    """The metrics averaged over households, with how many households each one covers."""

    recall: float
    ndcg: float
    phr: float
    repeat_recall: float
    explore_recall: float
    users: int
    repeat_users: int
    explore_users: int

    def as_dict(self, digits: int = 4) -> dict[str, float | int]:
        """Return the scores by name, rounded to ``digits``."""
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score_baskets(
    predictions: Sequence[Sequence[Item]],
    truths: Sequence[Collection[Item]],
    pasts: Sequence[Collection[Item]],
    k: int,
) -> BasketScores:
    """Average the metrics over households: ``predictions[u]`` against ``truths[u]``, history ``pasts[u]``."""
    if not len(predictions) == len(truths) == len(pasts):
        raise ValueError(
            f"{len(predictions)} predictions, {len(truths)} true baskets and {len(pasts)} histories: "
            "give one of each per household"
        )
    recalls: list[float] = []
    ndcgs: list[float] = []
    hits: list[float] = []
    repeats: list[float] = []
    explores: list[float] = []
    for predicted, truth, past in zip(predictions, truths, pasts, strict=True):
        recalls.append(recall(predicted, truth, k))
        ndcgs.append(ndcg(predicted, truth, k))
        hits.append(1.0 if hit(predicted, truth, k) else 0.0)
        past_set = set(past)
        if (value := repeat_recall(predicted, truth, past_set, k)) is not None:
            repeats.append(value)
        if (value := explore_recall(predicted, truth, past_set, k)) is not None:
            explores.append(value)
    return BasketScores(
        recall=_mean(recalls),
        ndcg=_mean(ndcgs),
        phr=_mean(hits),
        repeat_recall=_mean(repeats),
        explore_recall=_mean(explores),
        users=len(recalls),
        repeat_users=len(repeats),
        explore_users=len(explores),
    )
