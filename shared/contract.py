"""Export the JSON Schema of every payload, so other implementations can follow the contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from shared import messages

# File name (without .schema.json) -> adapter of the payloads on that part of the wire.
SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "event": messages.EVENT_MESSAGE_ADAPTER,
    "command": messages.COMMAND_ADAPTER,
    "telemetry": messages.TELEMETRY_ADAPTER,
    "availability": messages.AVAILABILITY_ADAPTER,
    "config-desired": messages.CONFIG_ADAPTER,
}


def render() -> dict[str, str]:
    """Return each schema file's name and its exact text."""
    return {
        f"{name}.schema.json": json.dumps(adapter.json_schema(), indent=2, sort_keys=True) + "\n"
        for name, adapter in SCHEMAS.items()
    }


def export(directory: Path) -> list[Path]:
    """Write every schema into ``directory`` and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
