"""Files replaced whole, so that a power cut leaves the old content or the new, never half of each."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def replace_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a synced temporary file renamed over it.

    A file that existed keeps its mode and, where allowed, its owner (a broker reading it as
    another user still can); a new one is readable by its owner only.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous: os.stat_result | None = path.stat()
    except FileNotFoundError:
        previous = None
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if previous is not None:
            os.chmod(temporary, stat.S_IMODE(previous.st_mode))
            with contextlib.suppress(PermissionError):
                os.chown(temporary, previous.st_uid, previous.st_gid)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # The rename itself is only durable once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
