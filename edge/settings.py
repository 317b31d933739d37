"""The edge agent's configuration: a TOML file, overridden by ``FRIGO_EDGE_*`` variables and arguments.

Precedence, highest first: arguments, environment (``FRIGO_EDGE_MQTT__HOST``), the TOML file
(``--config`` or ``FRIGO_EDGE_CONFIG``), defaults. See ``deploy/frigo-edge.toml`` for an example.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge.consent import ConsentSettings
from shared.mqtt import MqttSettings
from shared.topics import validate_device_id


class RulesSettings(BaseModel):
    """Thresholds of the local rules that work offline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expiring_within_days: int = Field(default=2, ge=0, le=30)
    max_temperature_c: float = Field(default=8.0, description="Food-safety limit of the fridge.")
    temperature_grace_s: float = Field(default=1800, ge=0, description="How long above the limit before alerting.")
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
        default=300, gt=0, description="An item put back within this long was not consumed; its weight loss was."
    )


class EdgeSettings(BaseSettings):
    """Everything the agent needs to run."""

    model_config = SettingsConfigDict(env_prefix="FRIGO_EDGE_", env_nested_delimiter="__", extra="forbid")

    device_id: str = Field(description="This fridge's id; also its MQTT username and client id.")
    data_dir: Path = Field(default=Path("frigo-edge-data"), description="Where the local database lives.")
    mqtt: MqttSettings = MqttSettings()
    consent: ConsentSettings = ConsentSettings()
    rules: RulesSettings = RulesSettings()
    sensors: SensorSettings = SensorSettings()
    outbox_capacity: int = Field(
        default=200_000, ge=100, description="Most events and telemetry samples kept while offline."
    )
    resend_after_s: float = Field(default=10.0, gt=0, description="Publish unacknowledged events again after this.")
    window: int = Field(default=1000, ge=1, le=20_000, description="Most events published but not yet acknowledged.")
    telemetry_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("device_id")
    @classmethod
    def _valid_device_id(cls, value: str) -> str:
        return validate_device_id(value)

    @property
    def db_path(self) -> Path:
        """Return the path of the agent's SQLite database."""
        return self.data_dir / "edge.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then the environment, then the TOML file named in the config."""
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls), file_secret_settings


def load_settings(config_file: Path | None = None, **overrides: Any) -> EdgeSettings:
    """Build the settings from ``config_file`` (or ``FRIGO_EDGE_CONFIG``), the environment and overrides."""
    path = config_file or (Path(os.environ["FRIGO_EDGE_CONFIG"]) if os.environ.get("FRIGO_EDGE_CONFIG") else None)
    if path is None:
        return EdgeSettings(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"edge config file {path} does not exist; see deploy/frigo-edge.toml")

    class _FromFile(EdgeSettings):
        model_config = SettingsConfigDict(**{**EdgeSettings.model_config, "toml_file": path})

    return EdgeSettings.model_validate(_FromFile(**overrides).model_dump())
