"""Faults a scenario injects: the network, the broker and the fridges misbehaving on purpose."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """How often each fault happens; all off by default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker_restarts_per_day: float = Field(
        default=0,
        ge=0,
        le=24,
        description="Broker restarts a virtual day: every fridge reconnects.",
    )
    power_losses_per_fridge_day: float = Field(
        default=0, ge=0, le=1, description="Chance a day that a fridge loses power and starts again."
    )
    malformed_per_day: float = Field(
        default=0, ge=0, le=1000, description="Junk payloads published on fridges' event topics a day."
    )
    network_drops_per_fridge_day: float = Field(
        default=0, ge=0, le=24, description="Network drops a fridge suffers a virtual day, on average."
    )
    network_drop_minutes: float = Field(
        default=30, gt=0, le=1440, description="Mean length of a drop; each heals by the end of its day."
    )
    duplicates_per_day: float = Field(
        default=0, ge=0, le=1000, description="Events delivered a second time, across the fleet, a day."
    )
    out_of_order_per_day: float = Field(
        default=0, ge=0, le=1000, description="Times a day a fridge's latest events arrive again, shuffled."
    )
    clock_skew_s: float = Field(
        default=0, ge=0, le=86_400, description="Each fridge's clock is off by up to ± this many seconds."
    )
    resend_after_s: float = Field(
        default=10.0, gt=0, description="The fridges' resend interval; short so drops heal fast."
    )
