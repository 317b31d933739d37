"""Virtual households living with real fridges, scenarios with faults, and load on a broker and the cloud."""

__all__ = [
    "apiretailer",
    "catalog",
    "errors",
    "faults",
    "fleet",
    "household",
    "life",
    "load",
    "mosquitto",
    "network",
    "plots",
    "retailer",
    "runner",
    "scenario",
    "world",
]
