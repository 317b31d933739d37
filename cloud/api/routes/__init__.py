"""The API's routes, one module per resource, each an ``APIRouter`` that ``cloud/app.py`` mounts."""

__all__ = [
    "admin",
    "baskets",
    "campaigns",
    "catalog",
    "consents",
    "households",
    "offers",
    "operations",
    "orders",
    "privacy",
    "slots",
    "webhooks",
]
