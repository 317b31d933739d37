"""What a load scenario runs: the swarm's size, rate and length; a scenario's ``[load]`` table."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoadSettings(BaseModel):
    """The swarm of a load scenario; a scenario's ``[load]`` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: int = Field(default=10_000, ge=1, le=50_000, description="Connections, each its own user.")
    rate: float = Field(default=2000, gt=0, le=100_000, description="Events a second for the whole swarm.")
    duration_s: float = Field(default=60, gt=0, le=3600, description="Seconds of sending, the ramp included.")
    connect_rate: float = Field(default=1000, gt=0, description="New connections a second while ramping up.")
    cloud: bool = Field(default=False, description="Run a cloud worker that stores and acknowledges events.")
