"""The edge agent's configuration: a TOML file, overridden by ``FRIGO_EDGE_*`` variables and arguments.

Precedence, highest first: arguments, environment (``FRIGO_EDGE_MQTT__HOST``), the TOML file
(``--config`` or ``FRIGO_EDGE_CONFIG``), defaults. See ``deploy/frigo-edge.toml`` for an example.

The cloud reads its settings with pydantic-settings; the agent does the same merge here with
``tomllib`` because importing pydantic-settings costs 8.5 MB of the Pi's 40 MB budget
(measured: see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.consent import ConsentSettings
from edge.errors import ConfigError
from shared.mqtt import MqttSettings
from shared.topics import validate_device_id

ENV_PREFIX = "FRIGO_EDGE_"


class RulesSettings(BaseModel):
    """Thresholds of the local rules that work offline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expiring_within_days: int = Field(default=2, ge=0, le=30)
    max_temperature_c: float = Field(default=8.0, description="Food-safety limit of the fridge.")
    temperature_grace_s: float = Field(
        default=1800, ge=0, description="How long above the limit before alerting."
    )
    door_open_limit_s: float = Field(default=120, ge=0)


class ShelfSettings(BaseModel):
    """One weight shelf on an HX711 amplifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shelf_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    dout_pin: int = Field(ge=0, le=40)
    sck_pin: int = Field(ge=0, le=40)


class SensorSettings(BaseModel):
    """Which sensors this fridge has and where they are wired (BCM pin numbers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scanner: Literal["stdin", "evdev", "none"] = "stdin"
    scanner_device: Path | None = Field(default=None, description="Input device of an evdev scanner.")
    door_pin: int | None = Field(default=None, ge=0, le=40, description="Reed switch; none: no door sensor.")
    thermometers: list[str] = Field(
        default_factory=list, description="DS18B20 ids (28-...); 'auto' for the only one attached."
    )
    shelves: list[ShelfSettings] = Field(default_factory=list)
    poll_interval_s: float = Field(default=0.5, gt=0, description="Door and shelves are read this often.")
    temperature_interval_s: float = Field(default=30, gt=0)
    return_window_s: float = Field(
        default=300,
        gt=0,
        description="An item put back within this long was not consumed; its weight loss was.",
    )


class EdgeSettings(BaseModel):
    """Everything the agent needs to run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(description="This fridge's id; also its MQTT username and client id.")
    data_dir: Path = Field(default=Path("frigo-edge-data"), description="Where the local database lives.")
    mqtt: MqttSettings = MqttSettings()
    consent: ConsentSettings = ConsentSettings()
    rules: RulesSettings = RulesSettings()
    sensors: SensorSettings = SensorSettings()
    outbox_capacity: int = Field(
        default=200_000, ge=100, description="Most events and telemetry samples kept while offline."
    )
    resend_after_s: float = Field(
        default=10.0, gt=0, description="Publish unacknowledged events again after this."
    )
    window: int = Field(
        default=2000, ge=1, le=20_000, description="Most events published but not yet acknowledged."
    )
    telemetry_interval_s: float = Field(default=60.0, gt=0)
    linger_s: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="Wait this long after a new event before publishing, so that a burst (a bag of "
        "shopping scanned in) goes out as one batch; 0 publishes each event at once.",
    )
    power_safe: bool = Field(
        default=True,
        description="Flush every commit to the storage (SQLite synchronous=FULL), so a power cut loses "
        "nothing. The simulator turns it off: its fridges' power losses stop the process, not the "
        "machine, and every commit survives a process crash either way.",
    )

    @field_validator("device_id")
    @classmethod
    def _valid_device_id(cls, value: str) -> str:
        return validate_device_id(value)

    @property
    def db_path(self) -> Path:
        """Return the path of the agent's SQLite database."""
        return self.data_dir / "edge.db"


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> EdgeSettings:
    """Build the settings: defaults < TOML file < ``FRIGO_EDGE_*`` environment < ``overrides``.

    The file is ``config_file``, else ``FRIGO_EDGE_CONFIG`` if set. Environment names nest with
    ``__`` (``FRIGO_EDGE_MQTT__PORT=8883``); a value starting with ``[`` or ``{`` is JSON
    (``FRIGO_EDGE_CONSENT__SHARE='["inventory"]'``), anything else a string.
    """
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(environ[ENV_PREFIX + "CONFIG"])
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"edge config file {config_file} does not exist; see deploy/frigo-edge.toml"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"edge config file {config_file} is not valid TOML: {exc}") from None
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
            path = name[len(ENV_PREFIX) :].lower().split("__")
            _merge(values, _nest(path, _env_value(raw)))
    _merge(values, {k: v for k, v in overrides.items() if v is not None})
    try:
        return EdgeSettings.model_validate(values)
    except ValidationError as exc:
        source = f" (from {config_file} and the environment)" if config_file else " (from the environment)"
        raise ConfigError(f"invalid edge settings{source}:\n{exc}") from None


def _env_value(raw: str) -> Any:
    # Only lists and tables are JSON; "123" stays a string for pydantic to convert (a device id
    # of digits must not turn into a number).
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigError(f"cannot read {raw!r} as JSON") from None
    return raw


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(path[1:]):
        value = {key: value}
    return {path[0]: value}


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
