"""Offline evaluation of the cloud's predictions on real purchase data (`frigo eval`).

- `metrics`: recall, NDCG, hit ratio, repeat and explore recall (and explore NDCG) at k
- `datasets`: loaders of the next-basket JSON and transactions CSV files
- `baskets`: next-basket evaluation against popularity baselines, and the validation search
- `reorder`: when households re-buy the items they buy again (mean absolute error in days)
- `offers`: offers of items new to each household (explore recall and NDCG), and their tuning
- `closedloop`: reorder policies running simulated households whose true use is known
- `nextbasket`: the next-basket model those evaluations measure
"""

__all__ = ["baskets", "closedloop", "datasets", "metrics", "nextbasket", "offers", "reorder"]
