"""The fridge's edge agent: scans and sensors in, a durable inventory and outbox, events to the cloud."""

__all__ = [
    "agent",
    "calibration",
    "consent",
    "consumption",
    "database",
    "datafolder",
    "errors",
    "hardware",
    "inventory",
    "offers",
    "orders",
    "outbox",
    "recorder",
    "rules",
    "scangrammar",
    "sensors",
    "service",
    "settings",
    "telemetry",
    "uplink",
]
