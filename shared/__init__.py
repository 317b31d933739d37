"""The wire contract the edge, the cloud and the simulator share: topics, payloads, MQTT setup."""

__all__ = [
    "clock",
    "contract",
    "errors",
    "files",
    "gtin",
    "messages",
    "mqtt",
    "topics",
    "vocabulary",
]
