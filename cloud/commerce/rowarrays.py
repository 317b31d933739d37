"""Array pieces the basket models (``evaluation/nextbasket.py``, ``cloud/commerce/explore.py``)
share: pointers of rows in CSR form, sums per cell, runs of rows whose dense form fits in memory,
and each row's highest columns."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def row_pointers(sorted_rows: IntArray, n_rows: int) -> IntArray:
    """Return CSR pointers of row indices sorted ascending."""
    return np.searchsorted(sorted_rows, np.arange(n_rows + 1)).astype(np.int64)


def sum_by(cells: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Return the sum of ``weights`` per cell, for cells 0 to ``size - 1``."""
    return np.bincount(cells, weights=weights, minlength=size).astype(np.float64, copy=False)


def chunks(n_rows: int, row_cells: int, max_cells: int) -> list[IntArray]:
    """Split ``range(n_rows)`` into runs of at most ``max_cells`` cells as dense rows of ``row_cells``."""
    size = max(1, max_cells // max(1, row_cells))
    return [np.arange(s, min(s + size, n_rows), dtype=np.int64) for s in range(0, n_rows, size)]


def top_columns(scores: FloatArray, count: int) -> IntArray:
    """Return, per row, the columns of the ``count`` highest scores (in no order)."""
    if count >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1], dtype=np.int64), scores.shape).copy()
    return np.argpartition(-scores, count, axis=1)[:, :count].astype(np.int64)
