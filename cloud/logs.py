"""Logging of the cloud service: text for a person at a terminal, JSON lines for a log collector.

In JSON, each record is one object on one line::

    {"ts": "2026-05-01T12:00:00.123Z", "level": "WARNING", "logger": "cloud.ingest.batch",
     "message": "rejected message on ... (invalid_payload): ...", "topic": "...",
     "reason": "invalid_payload", "device_id": "fridge-1"}

Fields passed with ``extra=`` are added as they are (values JSON cannot hold as their ``str()``);
they never replace ``ts``, ``level``, ``logger`` or ``message``. An exception adds ``exc_info`` with
the formatted traceback.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object: ts (ISO 8601, UTC), level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON."""
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in document:
                document[key] = value
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(document, default=str, ensure_ascii=False)


def configure_logging(level: int | str = logging.INFO, json: bool = False) -> None:
    """Send every log record to stderr at ``level`` and above, as JSON lines if ``json``.

    Replaces the root logger's handlers, so call it once, at the start of the program.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True
    )
