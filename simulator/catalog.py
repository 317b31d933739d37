"""Products the virtual households buy.

Codes are GTIN-13 in the GS1 restricted-circulation range (prefix 20-29), which no real product
carries, so the simulator never claims a real product's barcode.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.gtin import make_gtin13


@dataclass(frozen=True, slots=True)
class Product:
    """A product type with its barcode and how many units a household keeps at most."""

    code: str
    name: str
    max_units: int


_NAMES = [
    ("Whole milk 1 l", 4),
    ("Butter 250 g", 2),
    ("Eggs, 10", 2),
    ("Natural yoghurt 500 g", 3),
    ("Cheddar 200 g", 2),
    ("Orange juice 1 l", 3),
    ("Tomatoes 500 g", 2),
    ("Cucumber", 2),
    ("Lettuce", 1),
    ("Carrots 1 kg", 1),
    ("Apples 1 kg", 2),
    ("Chicken breast 400 g", 2),
    ("Ham slices 150 g", 2),
    ("Mozzarella 125 g", 3),
    ("Cream 200 ml", 2),
    ("Sparkling water 1.5 l", 6),
    ("Beer 0.5 l", 6),
    ("Hummus 200 g", 2),
    ("Strawberry jam 340 g", 1),
    ("Mustard 200 g", 1),
    ("Tofu 400 g", 2),
    ("Salmon fillet 250 g", 1),
    ("Feta 200 g", 1),
    ("Oat drink 1 l", 3),
]

CATALOG: tuple[Product, ...] = tuple(
    Product(code=make_gtin13(f"2{i + 1:011d}"), name=name, max_units=max_units)
    for i, (name, max_units) in enumerate(_NAMES)
)
