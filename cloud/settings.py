"""The cloud service's configuration: environment variables ``FRIGO_CLOUD_*`` or arguments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.api import limits
from cloud.ingest.deadletters import DEFAULT_MAX_DEAD_LETTERS
from shared.mqtt import MqttSettings


class CloudSettings(BaseSettings):
    """Everything one cloud worker needs; nested MQTT settings as ``FRIGO_CLOUD_MQTT__HOST``."""

    model_config = SettingsConfigDict(env_prefix="FRIGO_CLOUD_", env_nested_delimiter="__")

    database_url: str = Field(
        default="sqlite:///frigo-cloud.db",
        description="SQLAlchemy URL: sqlite:///PATH, or postgresql+psycopg://USER@HOST/DB for production.",
    )
    mqtt: MqttSettings = MqttSettings()
    client_id: str = Field(
        default="frigo-cloud",
        description="MQTT client id, unique per worker [default: the MQTT username if one is set, else "
        "frigo-cloud]. Mosquitto with use_username_as_clientid uses the username instead, so give each "
        "worker its own MQTT user.",
    )
    shared_group: str | None = Field(
        default=None,
        description="Share the device streams among every worker of this group ($share/GROUP/...).",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port.")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Most events per commit.")
    batch_interval_s: float = Field(
        default=0.02, gt=0, le=5, description="Longest an event waits for its batch to fill."
    )
    auto_enroll: bool = Field(
        default=False,
        description="Give an unknown device its own new household instead of rejecting it: for the demo "
        "and a broker without authentication; otherwise enrol fridges with `frigo devices provision`.",
    )
    max_dead_letters: int = Field(
        default=DEFAULT_MAX_DEAD_LETTERS,
        ge=1,
        description="Most rejected messages kept in the dead_letters table; the oldest go first.",
    )
    writer_process: bool = Field(
        default=True,
        description="Validate and commit batches in a child process, so reading MQTT never waits for them.",
    )
    planning_interval_s: float = Field(
        default=900,
        gt=0,
        description="Plan every household's basket this often, in seconds.",
    )
    planning: bool = Field(default=True, description="Run the planning schedule in this worker.")
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks go to loopback and private addresses (tests, a trusted LAN); "
        "otherwise only public ones.",
    )
    assume_https: bool = Field(
        default=False,
        description="Browsers reach this worker over HTTPS through a TLS-terminating reverse proxy: treat "
        "every request as HTTPS (Secure sign-in cookie, HSTS) even if the proxy sends no "
        "X-Forwarded-Proto. A proxy that sends it needs no setting from 127.0.0.1 or ::1, and "
        "FORWARDED_ALLOW_IPS=its address from elsewhere (uvicorn's own variable).",
    )
    # Per worker (cloud/api/limits.py): with N workers a caller gets up to N times each rate.
    rate_limit_household: Annotated[str, AfterValidator(limits.check_rate)] = Field(
        default=limits.HOUSEHOLD_RATE,
        description='Requests per household token (and its web sessions), e.g. "120/minute" or '
        '"10/second;300/minute"; past it, 429 with Retry-After.',
    )
    rate_limit_operator: Annotated[str, AfterValidator(limits.check_rate)] = Field(
        default=limits.OPERATOR_RATE, description="Requests per operator token (and its web sessions)."
    )
    rate_limit_retailer: Annotated[str, AfterValidator(limits.check_rate)] = Field(
        default=limits.RETAILER_RATE, description="Requests per retailer API key (and its web sessions)."
    )
    rate_limit_address: Annotated[str, AfterValidator(limits.check_rate)] = Field(
        default=limits.ADDRESS_RATE,
        description="Requests per client address (an IPv6 /64) without a live credential.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object per line for a collector."
    )

    @model_validator(mode="after")
    def _client_id_from_username(self) -> CloudSettings:
        # Mosquitto with use_username_as_clientid (README) makes the username the client id anyway:
        # defaulting to it keeps the id the worker uses and logs the one the broker knows it by.
        if "client_id" not in self.model_fields_set and self.mqtt.username:
            self.client_id = self.mqtt.username
        return self
