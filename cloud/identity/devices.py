"""Device identity: provision, rotate, revoke and verify each fridge's own broker secret.

A device proves who it is with a random secret (``secrets.token_urlsafe(32)``, 256 bits) that
:func:`provision` returns exactly once. The database keeps two hashes of it and never the secret:

- ``secret_hash``: argon2id (argon2-cffi's defaults), what the cloud itself checks with
  :func:`verify`, for example in the embedded broker's authentication plugin;
- ``broker_hash``: Mosquitto's own format (``$7$``: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte
  digest), because Mosquitto cannot read argon2. :func:`write_mosquitto_files` regenerates
  Mosquitto's password file from these at any time, so the database stays the one source of
  truth: provisioning another device or revoking one rewrites the file without anybody's secret.

Both hashes are computed from the same secret at provisioning time, the only moment the cloud
holds it. Mosquitto checks the hash on its single network thread at every CONNECT, so a device's
``broker_hash`` keeps Mosquitto's own iteration count (:data:`DEVICE_ITERATIONS`): key stretching
protects guessable human passwords, and a 256-bit random secret cannot be guessed at any iteration
count. The cloud users' passwords are chosen by an operator, so their hashes are stretched
(:data:`CLOUD_ITERATIONS`); docs/BENCHMARKS.md has what each count costs.

The files rely on two settings of Mosquitto's own configuration (README's sample
``mosquitto.conf``): ``use_username_as_clientid true`` on every listener, so that no client can
connect under another's client id and knock it off, and a ``max_packet_size``
(:data:`MAX_PACKET_BYTES`).

Revoking a device marks it revoked and deletes both hashes; it drops out of the next password and
ACL files. Provisioning it again issues a new secret and lifts the revocation.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from cloud.db.tables import Device, Household
from cloud.errors import CloudError
from shared import topics
from shared.clock import Clock, SystemClock
from shared.files import replace_file

# 32 random bytes, URL-safe base64: 256 bits, nothing a person could pick or guess.
SECRET_BYTES = 32
# PBKDF2 iterations of a device's Mosquitto hash: mosquitto_passwd's own choice in Mosquitto 2.0.
# Measured (bench/mosquitto_hashes.py, docs/BENCHMARKS.md; 2 cores): a login costs Mosquitto's only
# thread 0.16 ms at 101 and 140-175 ms at 210,000, so 10,000 fridges reconnecting after a broker
# restart take ~2 s of its time at 101 and 24-31 min at 210,000, the whole fleet waiting meanwhile.
# A device's 256-bit random secret gains nothing from stretching.
DEVICE_ITERATIONS = 101
# PBKDF2 iterations of a cloud user's hash: OWASP's figure for PBKDF2-HMAC-SHA512, because an
# operator picks that password and it may be weaker than a device's; a worker logs in once per
# start, so 140-175 ms is nothing to it. But Mosquitto spends them on every login naming a cloud
# user, wrong password included: 6-7 attempts/s from anyone who can reach the port and guesses the
# name keep its only thread busy (README says to keep cloud usernames to oneself).
CLOUD_ITERATIONS = 210_000
_MOSQUITTO_SALT_BYTES = 12
_MOSQUITTO_DIGEST_BYTES = 64
# Cloud usernames: safe in a password file (no ':'), an ACL `user` line and a topic pattern.
_CLOUD_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Device streams the cloud may also write to: only to clear a retained message a device left there,
# which every new subscription would otherwise receive again (cloud.mqtt.subscriber does it).
CLOUD_CLEARS = (topics.Channel.EVENTS, topics.Channel.TELEMETRY)
# Mosquitto's max_packet_size (README's mosquitto.conf): bounds what one client can make the broker
# buffer (its default is MQTT's 256 MB). The largest legitimate packet is an event batch of 100
# events (shared.messages.MAX_BATCH); the largest event, an alert with its text fields at their
# limits and 20 product codes, is 2.5 KB in ASCII and 5.8 KB in 4-byte UTF-8, so ~580 KB a batch.
# 1 MiB leaves room: a device whose batch the broker refused would be cut off at every resend.
MAX_PACKET_BYTES = 1_048_576
# Options for every `listener` of mosquitto.conf (they are per listener): the username becomes the
# client id, so no client can connect under another's client id and take its connection over.
LISTENER_OPTIONS = ("use_username_as_clientid true",)

_hasher = PasswordHasher()


def household_id_for(device_id: str) -> str:
    """Return the id of the household auto-enrolment creates for a device."""
    return f"hh-{device_id}"


class DeviceAdminError(CloudError, ValueError):
    """A device or broker-credential operation that cannot be done as asked."""


class UnknownHouseholdError(DeviceAdminError, LookupError):
    """A household id that names no household."""

    def __init__(self, household_id: str) -> None:
        super().__init__(
            f"no household {household_id!r}: give an existing household, or none to create one for the device"
        )


@dataclass(frozen=True, slots=True)
class MosquittoFiles:
    """What :func:`write_mosquitto_files` wrote."""

    password_file: Path
    acl_file: Path
    devices: tuple[str, ...]
    cloud_users: tuple[str, ...]


# --- Provisioning ---------------------------------------------------------------------------


def provision(
    session: Session, device_id: str, household_id: str | None = None, *, clock: Clock | None = None
) -> str:
    """Give ``device_id`` a new secret and return it; only its hashes are stored.

    A new device joins ``household_id``, which must exist, or without one a new household of its
    own (``hh-<device_id>``). Provisioning a known device rotates its secret (the old one stops
    working) and lifts a revocation; it stays in its household.
    """
    topics.validate_device_id(device_id)
    now = (clock or SystemClock()).now()
    device = session.get(Device, device_id)
    if device is None:
        if household_id is None:
            household_id = household_id_for(device_id)
            if session.get(Household, household_id) is None:
                session.add(
                    Household(id=household_id, name=f"Household of fridge {device_id}", created_at=now)
                )
                session.flush()  # no ORM relationship orders the two inserts
        elif session.get(Household, household_id) is None:
            raise UnknownHouseholdError(household_id)
        device = Device(id=device_id, household_id=household_id, created_at=now)
    elif household_id is not None and household_id != device.household_id:
        raise DeviceAdminError(
            f"device {device_id!r} belongs to household {device.household_id!r}, not {household_id!r}: "
            "provision it without --household to rotate its secret"
        )
    secret = secrets.token_urlsafe(SECRET_BYTES)
    device.secret_hash = _hasher.hash(secret)
    device.broker_hash = mosquitto_hash(secret)
    device.revoked_at = None
    session.add(device)
    session.commit()
    return secret


def revoke(session: Session, device_id: str, *, clock: Clock | None = None) -> Device | None:
    """Revoke a device's credential (its hashes are deleted); None if the device is unknown.

    Revoking a revoked device changes nothing. The broker learns of it when its files are
    rewritten and reloaded (Mosquitto) or at the device's next connection (embedded broker).
    """
    device = session.get(Device, device_id)
    if device is None:
        return None
    if device.revoked_at is None:
        device.revoked_at = (clock or SystemClock()).now()
    device.secret_hash = None
    device.broker_hash = None
    session.add(device)
    session.commit()
    session.refresh(device)
    return device


def verify(session: Session, device_id: str, secret: str) -> bool:
    """Return whether ``secret`` is the current secret of a provisioned, unrevoked device."""
    device = session.get(Device, device_id)
    if device is None or device.revoked_at is not None or device.secret_hash is None:
        # Spend the same time as a real check, so timing does not tell which devices exist.
        _verify_argon2(_dummy_hash(), secret)
        return False
    return _verify_argon2(device.secret_hash, secret)


def list_devices(session: Session) -> Sequence[Device]:
    """Return every known device, provisioned or auto-enrolled, ordered by id."""
    return session.exec(select(Device).order_by(Device.id)).all()


def _verify_argon2(hashed: str, secret: str) -> bool:
    try:
        return _hasher.verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(SECRET_BYTES))


# --- Mosquitto's password hash ---------------------------------------------------------------


def mosquitto_hash(secret: str, *, salt: bytes | None = None, iterations: int = DEVICE_ITERATIONS) -> str:
    """Return ``secret`` hashed the way Mosquitto 2.0's password file stores it (``$7$``)."""
    salt = salt if salt is not None else os.urandom(_MOSQUITTO_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, _MOSQUITTO_DIGEST_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_verify(secret: str, hashed: str) -> bool:
    """Return whether ``secret`` matches a ``$7$`` hash from a Mosquitto password file."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except binascii.Error:
        return False
    iterations = int(parts[2])
    if not salt or len(expected) != _MOSQUITTO_DIGEST_BYTES or iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, _MOSQUITTO_DIGEST_BYTES)
    return hmac.compare_digest(digest, expected)


# --- Mosquitto's password and ACL files ------------------------------------------------------


def acl_text(cloud_users: Iterable[str]) -> str:
    """Return a Mosquitto ACL file: devices confined to their own topics, the cloud to its side."""
    lines = [
        "# Written by Frigo (`frigo devices write-mosquitto`); edits are overwritten.",
        "# A device's username is its device id: it writes and reads only its own topics.",
        *topics.acl_patterns(),
    ]
    for user in sorted(cloud_users):
        lines += [
            "",
            "# A cloud worker: reads what every device sends, writes what devices receive, and may",
            "# write to the device streams only to clear a retained message a device left there.",
            f"user {user}",
            *(f"topic read {topics.all_devices(channel)}" for channel in topics.DEVICE_TO_CLOUD),
            *(f"topic write {topics.all_devices(channel)}" for channel in topics.CLOUD_TO_DEVICE),
            *(f"topic write {topics.all_devices(channel)}" for channel in CLOUD_CLEARS),
        ]
    return "\n".join(lines) + "\n"


def write_mosquitto_files(
    session: Session,
    password_file: Path,
    acl_file: Path,
    cloud_users: Mapping[str, str] | None = None,
) -> MosquittoFiles:
    """Write Mosquitto's password and ACL files from the database; each replaced atomically.

    The password file holds every provisioned, unrevoked device and the cloud users; the ACL file
    confines devices to their own topics and gives the cloud users their side. ``cloud_users``
    maps cloud usernames (one per cloud worker: with ``use_username_as_clientid`` the username is
    the worker's client id) to their passwords and replaces the cloud users of the existing files;
    None keeps them (their lines are copied from the existing files), so provisioning a device
    does not need the cloud's password. An existing file keeps its mode and, where allowed, its
    owner; a new one is made readable by its owner only.
    """
    devices = {
        device.id: device.broker_hash
        for device in list_devices(session)
        if device.broker_hash is not None and device.revoked_at is None
    }
    if cloud_users is None:
        cloud_lines = _existing_cloud_users(password_file, acl_file)
    else:
        for user, password in cloud_users.items():
            if not _CLOUD_USER.fullmatch(user):
                raise DeviceAdminError(
                    f"invalid cloud username {user!r}: use 1-64 letters, digits, '.', '-' or '_'"
                )
            if not password:
                raise DeviceAdminError(f"cloud user {user!r} has an empty password")
        cloud_lines = {
            user: mosquitto_hash(password, iterations=CLOUD_ITERATIONS)
            for user, password in cloud_users.items()
        }
    clash = sorted(devices.keys() & cloud_lines.keys())
    if clash:
        raise DeviceAdminError(
            f"cloud user(s) {', '.join(clash)} share a name with a device: rename the cloud user"
        )
    entries = sorted(devices.items()) + sorted(cloud_lines.items())
    replace_file(password_file, "".join(f"{user}:{hashed}\n" for user, hashed in entries))
    replace_file(acl_file, acl_text(cloud_lines))
    return MosquittoFiles(password_file, acl_file, tuple(sorted(devices)), tuple(sorted(cloud_lines)))


def _existing_cloud_users(password_file: Path, acl_file: Path) -> dict[str, str]:
    """Return the cloud users (ACL ``user`` blocks) of existing files, with their password hashes."""
    try:
        acl = acl_file.read_text(encoding="utf-8")
        passwords = password_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    names = {line.split(None, 1)[1].strip() for line in acl.splitlines() if line.startswith("user ")}
    hashes = dict(line.split(":", 1) for line in passwords.splitlines() if ":" in line)
    return {name: hashes[name] for name in names if name in hashes}
