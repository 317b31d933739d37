"""A data folder belongs to one device: recorded at its first start, refused under any other id.

The folder's database holds one device's sequence numbers and the events it has not sent yet, and
the cloud takes those from that device only: an agent started on the folder under another id would
send batches the cloud refuses, again and again. :func:`claim` records the owner at the first start
and refuses every other id after it. :func:`hand_over` gives the folder to another device when asked
(`frigo edge adopt`, `frigo edge reset`), and :func:`exclusive` keeps two agents, or an agent and a
hand-over, off one folder.

A hand-over loses nothing of either device. It first copies the whole database (and the shelves'
calibration) into ``set-aside/<previous device>-<UTC time>/``: a data folder of the previous
device's own, which sends that device's unsent events when an agent starts on it under that id.
Then, in one transaction:

- ``adopt`` (the same fridge under a new id) keeps the food (lots and products) and removes what
  was the previous device's exchange with the cloud: unsent events, telemetry samples, offers,
  orders, alerts, remote configuration, counters and the sequence number.
- ``reset`` removes the food too: the folder starts empty.
- ``reset`` under the folder's own device removes only the food; the device's unsent events still
  go out under its id and its numbering goes on.

The new device starts at seq 1, or where it stopped if the folder was once its own. A hand-over is
refused while the previous device has events the cloud has not acknowledged, unless asked to set
them aside (they are in the copy either way).
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from edge.calibration import CALIBRATION_FILE
from edge.database import open_database, transaction
from edge.errors import DataFolderInUse, ForeignDataFolder, StorageError, UnsentEvents
from edge.settings import EdgeSettings

log = logging.getLogger(__name__)

# Where a hand-over keeps the previous device's data, inside the data folder: the systemd unit lets
# the agent write nowhere else.
SET_ASIDE = "set-aside"
# Held (flock) by a running agent and by a hand-over; the kernel releases it when the process dies,
# even by SIGKILL, so a crash never leaves the folder locked.
LOCK_FILE = "edge.lock"
# The device's exchange with the cloud: a device handed the folder starts these empty.
_DEVICE_TABLES = ("outbox", "telemetry", "offers", "order_lines", "orders", "remote_config", "alerts")
# The food in the fridge.
_FOOD_TABLES = ("lots", "products")
# Tries to count, copy and change the folder with nothing written in between; only manual commands
# can write while no agent runs, so a second try always does.
HAND_OVER_ATTEMPTS = 3


def owner(conn: sqlite3.Connection) -> str | None:
    """Return the device the folder belongs to; None if none is recorded yet."""
    row = conn.execute("SELECT device_id FROM owner WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def claim(
    conn: sqlite3.Connection, data_dir: Path, device_id: str, now: datetime, *, record: bool = True
) -> None:
    """Refuse a folder of another device; record ``device_id`` in a folder without an owner.

    With ``record`` False (commands that only read) a folder without an owner stays without one.
    Raise :class:`ForeignDataFolder` when the folder is another device's.
    """
    current = owner(conn)
    if current is None and record:
        with transaction(conn):
            current = owner(conn)  # another process may have recorded one since
            if current is None:
                history = _has_history(conn)
                _set_owner(conn, device_id, now)
                current = device_id
                if history:
                    # Made before folders recorded their device: the first id it starts with is
                    # taken to be its own, so that current installs keep working.
                    log.warning(
                        "data folder %s had no device recorded (it predates the check); it now belongs "
                        "to %s, the id it started with",
                        data_dir,
                        device_id,
                    )
                else:
                    log.info("data folder %s now belongs to device %s", data_dir, device_id)
    if current is not None and current != device_id:
        raise ForeignDataFolder(data_dir, current, device_id, _count(conn, "outbox"))


@contextmanager
def exclusive(data_dir: Path, action: str) -> Iterator[None]:
    """Hold the data folder for one agent or one hand-over; raise :class:`DataFolderInUse` if held.

    ``action`` completes the error message: "cannot start the agent", "cannot adopt the folder".
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataFolderInUse(data_dir, action) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Handover:
    """What a hand-over did, in numbers, for the command to report."""

    data_dir: Path
    previous: str
    device_id: str
    food_kept: bool  # True: adopt; False: reset
    copy: Path | None  # None: nothing changed
    unsent_events: int  # the previous device's
    telemetry_samples: int
    offers: int
    orders: int
    lots: int
    products: int
    last_seq: int  # the previous device's last seq
    next_seq: int  # the first seq the device will use here
    calibrated: bool  # calibration.json is there (and stays)

    def report(self) -> list[str]:
        """Return the lines that tell the user what was kept, what moved and where to."""
        if self.copy is None:
            empty = "" if self.food_kept else " and holds no food"
            return [f"data folder {self.data_dir} belongs to {self.device_id} already{empty}: nothing to do"]
        food = f"{self.lots} lots of {self.products} products"
        calibration = ", the shelves' calibration" if self.calibrated else ""
        if self.previous == self.device_id:
            return [
                f"data folder {self.data_dir} stays {self.device_id}'s; the food in it is cleared",
                f"kept: {self.unsent_events} unsent events (they still go out as {self.device_id}), "
                f"telemetry, offers, orders, alerts{calibration}; numbering goes on at seq "
                f"{self.next_seq}",
                f"set aside in {self.copy}: {food}",
            ]
        lines = [
            f"data folder {self.data_dir} now belongs to {self.device_id}; it belonged to {self.previous}",
            f"kept: {food + ' in the fridge' if self.food_kept else 'no food'}{calibration}",
            f"set aside in {self.copy} (a data folder of {self.previous}'s own): "
            f"{self.previous}'s {self.unsent_events} unsent events, {self.telemetry_samples} telemetry "
            f"samples, {self.offers} offers, {self.orders} orders, its alerts, remote configuration and "
            f"sequence counter (last seq {self.last_seq})"
            + ("" if self.food_kept else f"; the food: {food}"),
        ]
        if self.unsent_events:
            lines.append(
                f"to send {self.previous}'s unsent events: frigo edge --device-id {self.previous} "
                f"--data-dir {self.copy}"
            )
        lines.append(f"{self.device_id}'s events here start at seq {self.next_seq}")
        return lines


def hand_over(
    settings: EdgeSettings, now: datetime, *, keep_food: bool, set_aside_unsent: bool = False
) -> Handover:
    """Give the data folder to ``settings.device_id``: adopt (``keep_food``) or reset it.

    Raise :class:`DataFolderInUse` while an agent runs on the folder, and :class:`UnsentEvents` when
    the previous device has unacknowledged events and ``set_aside_unsent`` is False.
    """
    command = "adopt" if keep_food else "reset"
    with exclusive(settings.data_dir, f"{command} the folder"):
        conn = open_database(settings.db_path, power_safe=settings.power_safe)
        try:
            return _hand_over(conn, settings, now, keep_food=keep_food, set_aside_unsent=set_aside_unsent)
        finally:
            conn.close()


def _hand_over(
    conn: sqlite3.Connection,
    settings: EdgeSettings,
    now: datetime,
    *,
    keep_food: bool,
    set_aside_unsent: bool,
) -> Handover:
    previous = owner(conn)
    if previous is None:
        # A folder without an owner is the first id's that touches it, as at a start.
        claim(conn, settings.data_dir, settings.device_id, now)
        previous = settings.device_id
    for _ in range(HAND_OVER_ATTEMPTS):
        version = _data_version(conn)
        result = _take_stock(conn, settings, previous, keep_food)
        if result.previous == result.device_id and (keep_food or not (result.lots or result.products)):
            return result  # nothing to hand over
        if result.previous != result.device_id and result.unsent_events and not set_aside_unsent:
            command = "adopt" if keep_food else "reset"
            raise UnsentEvents(settings.data_dir, previous, result.unsent_events, command)
        copy = _set_aside(conn, settings.data_dir, previous, now)
        conn.execute("BEGIN IMMEDIATE")
        if _data_version(conn) == version:
            break
        # Another process (`frigo edge answer`, say) wrote between the count and the copy: the
        # copy may miss it, and what is removed must be in the copy. Count and copy again.
        conn.execute("ROLLBACK")
        shutil.rmtree(copy)
    else:
        raise StorageError(
            f"data folder {settings.data_dir} kept changing during the hand-over: stop whatever "
            "writes to it (`frigo edge answer`, `order`, `consent`) and try again"
        )
    try:
        next_seq = result.next_seq
        if result.previous != result.device_id:
            next_seq = _leave(conn, previous, settings.device_id, result.last_seq, now, copy)
        if not keep_food:
            for table in _FOOD_TABLES:
                conn.execute(f"DELETE FROM {table}")
        _set_owner(conn, settings.device_id, now)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    log.info(
        "data folder %s handed over from %s to %s; copy in %s",
        settings.data_dir,
        previous,
        settings.device_id,
        copy,
    )
    return replace(result, copy=copy, next_seq=next_seq)


def _take_stock(conn: sqlite3.Connection, settings: EdgeSettings, previous: str, keep_food: bool) -> Handover:
    """Count what the folder holds, as a hand-over that has not changed anything yet."""
    counts = {table: _count(conn, table) for table in ("outbox", "telemetry", "offers", "orders", "products")}
    last_seq = _meta(conn, "last_seq")
    return Handover(
        data_dir=settings.data_dir,
        previous=previous,
        device_id=settings.device_id,
        food_kept=keep_food,
        copy=None,
        unsent_events=counts["outbox"],
        telemetry_samples=counts["telemetry"],
        offers=counts["offers"],
        orders=counts["orders"],
        lots=int(conn.execute("SELECT COUNT(*) FROM lots WHERE quantity > 0").fetchone()[0]),
        products=counts["products"],
        last_seq=last_seq,
        next_seq=last_seq + 1,
        calibrated=(settings.data_dir / CALIBRATION_FILE).exists(),
    )


def _data_version(conn: sqlite3.Connection) -> int:
    """Return SQLite's counter of commits by other connections (it moves when anyone else writes)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _leave(
    conn: sqlite3.Connection, previous: str, device_id: str, last_seq: int, now: datetime, copy: Path
) -> int:
    """Remove the previous device's exchange with the cloud; return the new device's first seq."""
    conn.execute(
        "INSERT OR REPLACE INTO former_owners (device_id, last_seq, left_at, copy) VALUES (?, ?, ?, ?)",
        (previous, last_seq, now.isoformat(), str(copy)),
    )
    for table in _DEVICE_TABLES:
        conn.execute(f"DELETE FROM {table}")
    # Every counter in meta is the device's: its seq, configuration version, outbox pressure.
    conn.execute("DELETE FROM meta")
    # Consumption held back under consent was the previous household's to report; it is in the copy.
    conn.execute("UPDATE lots SET withheld = 0")
    row = conn.execute("SELECT last_seq FROM former_owners WHERE device_id = ?", (device_id,)).fetchone()
    if row is None:
        return 1
    # Back on a folder that was once its own: go on from its last seq, never repeat one.
    conn.execute("INSERT INTO meta (key, value) VALUES ('last_seq', ?)", (int(row[0]),))
    conn.execute("DELETE FROM former_owners WHERE device_id = ?", (device_id,))
    return int(row[0]) + 1


def _set_aside(conn: sqlite3.Connection, data_dir: Path, device_id: str, now: datetime) -> Path:
    """Copy the whole database and the calibration into a new folder under ``set-aside/``."""
    base = data_dir / SET_ASIDE / f"{device_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True)
    target = sqlite3.connect(folder / "edge.db")
    try:
        conn.backup(target)  # a consistent copy, WAL included
    finally:
        target.close()
    calibration = data_dir / CALIBRATION_FILE
    if calibration.exists():
        shutil.copy2(calibration, folder / CALIBRATION_FILE)
    return folder


def _set_owner(conn: sqlite3.Connection, device_id: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO owner (id, device_id, since) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, since = excluded.since",
        (device_id, now.isoformat()),
    )


def _has_history(conn: sqlite3.Connection) -> bool:
    """Say whether the folder was used before: a seq allocated, or food recorded."""
    return any(
        conn.execute(query).fetchone() is not None
        for query in (
            "SELECT 1 FROM meta WHERE key = 'last_seq'",
            "SELECT 1 FROM lots LIMIT 1",
            "SELECT 1 FROM products LIMIT 1",
        )
    )


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
