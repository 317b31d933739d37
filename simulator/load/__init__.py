"""The simulator's load generator: many device connections against a broker and the cloud, measured.

- `blast`: a few paho device connections publishing ready-made events as fast as they go
- `packets`: the MQTT 3.1.1 packets the swarm speaks, encoded and decoded
- `broker`: the swarm's Mosquitto users (each device with its own secret), password and ACL files
- `swarm`: thousands of device connections on one asyncio event loop at a steady rate
- `progress`: the swarm's live display
- `settings`: a load scenario's ``[load]`` table
- `procfs`: a process's memory and CPU time from ``/proc``
- `cloudworker`: a ``frigo cloud`` worker in a process of its own
- `run`: a load scenario run against a Mosquitto of its own, with its figures
"""

__all__ = [
    "blast",
    "broker",
    "cloudworker",
    "packets",
    "procfs",
    "progress",
    "run",
    "settings",
    "swarm",
]
