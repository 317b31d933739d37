"""A virtual household's habits: what it puts into the fridge and takes out, as scanner lines."""

from __future__ import annotations

import random
from collections.abc import Callable

from simulator.catalog import CATALOG, Product

# Share of scans that put something in while the fridge is still filling up.
RESTOCK_BIAS = 0.6


class VirtualHousehold:
    """Picks the next scan from the fridge's current contents; deterministic for a seed."""

    def __init__(self, seed: int, products: tuple[Product, ...] = CATALOG) -> None:
        self._random = random.Random(seed)
        self._products = self._random.sample(products, k=min(12, len(products)))

    def next_line(self, quantity: Callable[[str], float]) -> str:
        """Return the next scanner line, given how many units of a code the fridge holds."""
        in_fridge = [p for p in self._products if quantity(p.code) > 0]
        room = [p for p in self._products if quantity(p.code) < p.max_units]
        if in_fridge and (not room or self._random.random() > RESTOCK_BIAS):
            return f"-{self._random.choice(in_fridge).code}"
        return f"+{self._random.choice(room).code}"
