"""Every payload on the wire, as frozen pydantic models; the one definition both sides use.

Each payload carries ``schema_version`` and a ``type`` discriminator. Events, which a device records
durably and the cloud stores exactly once, also carry a unique ``event_id``, the ``device_id``, a
per-device ``seq`` that increases by one per event, and the UTC time they happened. Decode through
the module-level adapters (``decode_event``, ``decode_command``, ...): one ``model_validate_json`` pass,
no ``json.loads`` first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from shared.errors import InvalidMessage
from shared.topics import DEVICE_ID_PATTERN

SCHEMA_VERSION = 1


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
# Barcodes as the scanner reads them: GTIN digits, or the letters and digits of Code 128 labels.
ProductCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,48}$")]


class Message(BaseModel):
    """Base of every payload: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1


class EventBase(Message):
    """What every event carries, whatever happened."""

    event_id: UUID
    device_id: DeviceId
    seq: PositiveInt = Field(description="Per-device sequence number, 1, 2, 3, ... without gaps.")
    occurred_at: UtcDatetime


class ItemAdded(EventBase):
    """Units of a product were put into the fridge."""

    type: Literal["item_added"] = "item_added"
    code: ProductCode
    quantity: PositiveInt = 1


class ItemRemoved(EventBase):
    """Units of a product were taken out of the fridge."""

    type: Literal["item_removed"] = "item_removed"
    code: ProductCode
    quantity: PositiveInt = 1


Event = Annotated[ItemAdded | ItemRemoved, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class TelemetryReported(Message):
    """A device's periodic health report; not durable, newer replaces older."""

    type: Literal["telemetry"] = "telemetry"
    device_id: DeviceId
    occurred_at: UtcDatetime
    outbox_depth: int = Field(ge=0, description="Events recorded but not yet acknowledged by the cloud.")
    uptime_s: float = Field(ge=0)


class AvailabilityChanged(Message):
    """Whether a device is connected; retained, and set to offline by the Last Will."""

    type: Literal["availability"] = "availability"
    device_id: DeviceId
    state: Literal["online", "offline"]
    since: UtcDatetime


SeqRange = tuple[PositiveInt, PositiveInt]


class EventsAcknowledged(Message):
    """The cloud has committed these events; the device may forget them."""

    type: Literal["events_acknowledged"] = "events_acknowledged"
    device_id: DeviceId
    ranges: tuple[SeqRange, ...] = Field(
        min_length=1, description="Inclusive [first, last] ranges of committed sequence numbers."
    )

    @model_validator(mode="after")
    def _ranges_ordered(self) -> EventsAcknowledged:
        if any(first > last for first, last in self.ranges):
            raise ValueError("each range must be [first, last] with first <= last")
        return self


class OfferSent(Message):
    """A personalized offer for the household, with the reason it was made."""

    type: Literal["offer_sent"] = "offer_sent"
    offer_id: UUID
    device_id: DeviceId
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=2000)
    explanation: str = Field(min_length=1, max_length=2000, description="Why this household got it.")
    expires_at: UtcDatetime


class OrderUpdated(Message):
    """The state of a grocery order changed."""

    type: Literal["order_updated"] = "order_updated"
    order_id: UUID
    device_id: DeviceId
    status: Literal["created", "accepted", "rejected", "picking", "dispatched", "delivered", "cancelled"]
    expected_delivery: UtcDatetime | None = None


Command = Annotated[EventsAcknowledged | OfferSent | OrderUpdated, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class ConfigDesired(Message):
    """The configuration the cloud wants a device to run, versioned like a device shadow."""

    type: Literal["config_desired"] = "config_desired"
    device_id: DeviceId
    version: PositiveInt
    settings: dict[str, JsonValue]


TELEMETRY_ADAPTER: TypeAdapter[TelemetryReported] = TypeAdapter(TelemetryReported)
AVAILABILITY_ADAPTER: TypeAdapter[AvailabilityChanged] = TypeAdapter(AvailabilityChanged)
CONFIG_ADAPTER: TypeAdapter[ConfigDesired] = TypeAdapter(ConfigDesired)

T = TypeVar("T")


def _decode(adapter: TypeAdapter[T], raw: bytes | str) -> T:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise InvalidMessage(_reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    """Summarize a validation error in one line: where and what, for logs and counters."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode_event(raw: bytes | str) -> Event:
    """Decode an event payload, or raise :class:`InvalidMessage` saying why not."""
    return _decode(EVENT_ADAPTER, raw)


def decode_command(raw: bytes | str) -> Command:
    """Decode a command payload, or raise :class:`InvalidMessage` saying why not."""
    return _decode(COMMAND_ADAPTER, raw)


def decode_telemetry(raw: bytes | str) -> TelemetryReported:
    """Decode a telemetry payload, or raise :class:`InvalidMessage` saying why not."""
    return _decode(TELEMETRY_ADAPTER, raw)


def decode_availability(raw: bytes | str) -> AvailabilityChanged:
    """Decode an availability payload, or raise :class:`InvalidMessage` saying why not."""
    return _decode(AVAILABILITY_ADAPTER, raw)


def decode_config(raw: bytes | str) -> ConfigDesired:
    """Decode a desired-configuration payload, or raise :class:`InvalidMessage` saying why not."""
    return _decode(CONFIG_ADAPTER, raw)


def encode(message: Message) -> bytes:
    """Serialize any payload to the JSON bytes sent on the wire."""
    return message.model_dump_json().encode()


def seq_ranges(seqs: list[int]) -> tuple[SeqRange, ...]:
    """Compress sequence numbers into sorted inclusive ranges: [1,2,3,7] -> ((1,3),(7,7))."""
    ranges: list[SeqRange] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)
