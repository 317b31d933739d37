"""The swarm's Mosquitto: who may log in (each device with its own secret, the cloud) and what it queues."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared import topics
from shared.files import replace_file

CLOUD_USER = "frigo-cloud"
# Not 0 (no limit): Mosquitto 2.0.11 with 0 disconnects a client after a QoS 1 publish the ACL
# denies. Large enough that no session of the run ever drops a message.
MAX_QUEUED = 1_000_000


@dataclass(frozen=True, slots=True)
class Credential:
    """A device id and the secret it logs in with."""

    device_id: str
    secret: str


def make_credentials(prefix: str, count: int) -> list[Credential]:
    """Return ``count`` devices ``{prefix}-00000``, … each with a new random secret."""
    width = max(5, len(str(count - 1)))
    return [
        Credential(topics.validate_device_id(f"{prefix}-{n:0{width}d}"), secrets.token_urlsafe(32))
        for n in range(count)
    ]


def write_broker_files(
    directory: Path, credentials: Sequence[Credential], cloud_users: Mapping[str, str]
) -> tuple[Path, Path]:
    """Write Mosquitto's password file (every device, the cloud users) and ACL file; return both.

    Hashed for Mosquitto directly, without provisioning: argon2 for 10,000 devices takes minutes.
    """
    from cloud.identity.devices import acl_text, mosquitto_hash

    password_file, acl_file = directory / "passwd", directory / "acl"
    users = {c.device_id: c.secret for c in credentials} | dict(cloud_users)
    replace_file(password_file, "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in users.items()))
    replace_file(acl_file, acl_text(cloud_users))
    return password_file, acl_file
