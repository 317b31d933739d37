"""Errors of the edge agent.

FrigoError
└── EdgeError
    ├── ConfigError (ValueError)     settings that cannot work
    ├── ScanError (ValueError)       a scanner line that is not in the grammar
    ├── NotInFridge (LookupError)    removing something the fridge does not hold
    ├── NothingToDo (LookupError)    opening what is open, moving what is there already
    ├── StorageError (OSError)       the local database cannot be opened or written
    ├── SensorError (OSError)        a sensor that cannot be read
    ├── ForeignDataFolder (ValueError)      a data folder that belongs to another device
    ├── UnsentEvents (ValueError)           a hand-over while the old device has unsent events
    └── DataFolderInUse (BlockingIOError)   another agent, or a hand-over, holds the data folder
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import FrigoError


class EdgeError(FrigoError):
    """Root of the edge agent's errors."""


class ScanError(EdgeError, ValueError):
    """A scanner line that is not in the grammar."""


class NotInFridge(EdgeError, LookupError):
    """A removal of a product the fridge does not hold."""

    def __init__(self, code: str) -> None:
        super().__init__(f"{code} is not in the fridge: scan it in with +{code} first")
        self.code = code


class StorageError(EdgeError, OSError):
    """The local database cannot be opened or written."""


class SensorError(EdgeError, OSError):
    """A sensor that cannot be read; the message names the device and what to check."""


class ConfigError(EdgeError, ValueError):
    """Settings that cannot work; the message says which and where they came from."""


class NothingToDo(EdgeError, LookupError):
    """An action with nothing left to act on: every lot is open already, or already there."""


class ForeignDataFolder(EdgeError, ValueError):
    """A data folder that belongs to another device than the one starting on it."""

    def __init__(self, data_dir: Path, owner: str, device_id: str, unsent: int) -> None:
        hand_over = f"frigo edge --device-id {device_id} --data-dir {data_dir}"
        super().__init__(
            f"data folder {data_dir} belongs to device {owner!r}, not {device_id!r} (it holds "
            f"{owner}'s sequence numbers and {unsent} unsent events, which the cloud would refuse "
            f"from {device_id}): start it with --device-id {owner}, or give {device_id} a data folder "
            f"of its own (--data-dir); to hand this one over to {device_id}, run `{hand_over} adopt` "
            f"(keeps the food in the fridge) or `{hand_over} reset` (starts empty), which keep "
            f"{owner}'s data in a copy"
        )
        self.owner = owner
        self.device_id = device_id
        self.unsent = unsent


class UnsentEvents(EdgeError, ValueError):
    """A hand-over refused because the previous device still has events the cloud has not acknowledged."""

    def __init__(self, data_dir: Path, owner: str, unsent: int, command: str) -> None:
        run = f"frigo edge --device-id {owner} --data-dir {data_dir}"
        super().__init__(
            f"device {owner!r} has {unsent} events in {data_dir} that the cloud has not acknowledged, "
            f"and nothing was changed. Send them first: run `{run}` until `{run} status` shows "
            f"outbox 0, then {command} again; or add --set-aside-unsent to {command} now: they move, "
            f"with the rest of {owner}'s data, into a copy of the folder under {data_dir}/set-aside/, "
            f"which sends them as {owner} when an agent starts on it"
        )
        self.owner = owner
        self.unsent = unsent


class DataFolderInUse(EdgeError, BlockingIOError):
    """The data folder is held by a running agent or a hand-over in progress."""

    def __init__(self, data_dir: Path, action: str) -> None:
        super().__init__(
            f"cannot {action}: an agent is running on data folder {data_dir} (or a hand-over is "
            "under way); stop it first (`sudo systemctl stop frigo-edge` on a Pi), or give this "
            "one a data folder of its own (--data-dir)"
        )
