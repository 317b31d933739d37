"""The edge agent's configuration: environment variables ``FRIGO_EDGE_*`` or arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.mqtt import MqttSettings
from shared.topics import validate_device_id


class EdgeSettings(BaseSettings):
    """Everything the agent needs to run; nested MQTT settings as ``FRIGO_EDGE_MQTT__HOST``."""

    model_config = SettingsConfigDict(env_prefix="FRIGO_EDGE_", env_nested_delimiter="__")

    device_id: str = Field(description="This fridge's id; also its MQTT username and client id.")
    data_dir: Path = Field(default=Path("frigo-edge-data"), description="Where the local database lives.")
    mqtt: MqttSettings = MqttSettings()
    resend_after_s: float = Field(
        default=10.0, gt=0, description="Publish unacknowledged events again after this long."
    )
    window: int = Field(
        default=1000, ge=1, le=20_000, description="Most events published but not yet acknowledged."
    )
    telemetry_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("device_id")
    @classmethod
    def _valid_device_id(cls, value: str) -> str:
        return validate_device_id(value)

    @property
    def db_path(self) -> Path:
        """Return the path of the agent's SQLite database."""
        return self.data_dir / "edge.db"
