"""Every payload on the wire, as frozen pydantic models; the one definition both sides use.

Each payload carries ``schema_version`` and a ``type`` discriminator. Events, which a device records
durably and the cloud stores exactly once, also carry a unique ``event_id``, the ``device_id``, a
per-device ``seq`` that increases by one per event, and the UTC time they happened. Decode through
the module-level adapters (``decode_event``, ``decode_command``, ...): one ``model_validate_json`` pass,
no ``json.loads`` first.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
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
from shared.vocabulary import ConsentPurpose, FridgeOrderStatus, OfferAnswer

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


Unit = Literal["unit", "g", "ml"]
Location = Literal["fridge", "freezer", "door"]
Quantity = Annotated[float, Field(gt=0, description="How much, in the event's unit.")]


class ItemAdded(EventBase):
    """A lot of a product was put into the fridge."""

    type: Literal["item_added"] = "item_added"
    code: ProductCode
    lot_id: PositiveInt
    quantity: Quantity = 1
    unit: Unit = "unit"
    location: Location = "fridge"
    best_before: date | None = None
    order_id: UUID | None = Field(default=None, description="The order this delivery reconciles, if any.")


class ItemConsumed(EventBase):
    """Part or all of a lot was used up."""

    type: Literal["item_consumed"] = "item_consumed"
    code: ProductCode
    lot_id: PositiveInt
    quantity: Quantity = 1
    unit: Unit = "unit"
    source: Literal["scan", "weight"] = Field(
        default="scan", description="A scan out, or inferred from a weight shelf."
    )


class ItemOpened(EventBase):
    """A lot was opened; opening shortens its shelf life."""

    type: Literal["item_opened"] = "item_opened"
    code: ProductCode
    lot_id: PositiveInt
    best_before: date | None = Field(description="The lot's due date now that it is open.")


class ItemMoved(EventBase):
    """A lot changed place: fridge, freezer or door."""

    type: Literal["item_moved"] = "item_moved"
    code: ProductCode
    lot_id: PositiveInt
    from_location: Location
    to_location: Location


class ItemDiscarded(EventBase):
    """A lot, or part of it, was thrown away: waste."""

    type: Literal["item_discarded"] = "item_discarded"
    code: ProductCode
    lot_id: PositiveInt
    quantity: Quantity
    unit: Unit = "unit"
    reason: Literal["expired", "spoiled", "other"]


AlertKind = Literal["expiring", "expired", "temperature_high", "door_open"]


class AlertRaised(EventBase):
    """A local rule started to hold: food about to expire, a warm fridge, an open door."""

    type: Literal["alert_raised"] = "alert_raised"
    kind: AlertKind
    subject: str = Field(max_length=100, description="Which instance: 'lot:12', 'probe:fridge', 'door'.")
    detail: str = Field(max_length=1000, description="What the household is told.")
    since: UtcDatetime
    perishable_codes: tuple[ProductCode, ...] = ()


class AlertCleared(EventBase):
    """A local rule stopped holding."""

    type: Literal["alert_cleared"] = "alert_cleared"
    kind: AlertKind
    subject: str = Field(max_length=100)


class OfferAnswered(EventBase):
    """The household accepted or dismissed an offer on the fridge."""

    type: Literal["offer_answered"] = "offer_answered"
    offer_id: UUID
    # not_this_category: no more offers of the offer's category.
    answer: OfferAnswer


class OrderAnswered(EventBase):
    """The household answered an order on the fridge: a proposed basket, or a placed order."""

    type: Literal["order_answered"] = "order_answered"
    order_id: UUID
    answer: Literal["approve", "cancel", "skip", "accept_substitutions", "reject_substitutions"]


class ConsentChanged(EventBase):
    """The household granted or withdrew, on the fridge, a company's consent for a purpose."""

    type: Literal["consent_changed"] = "consent_changed"
    recipient: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    purpose: ConsentPurpose
    action: Literal["grant", "withdraw"]


class ConfigApplied(EventBase):
    """The device applied (or refused) a desired configuration version, like a device shadow's report."""

    type: Literal["config_applied"] = "config_applied"
    version: PositiveInt
    status: Literal["applied", "rejected"]
    error: str | None = Field(default=None, max_length=1000)


class DataWiped(EventBase):
    """The device erased its local data as requested; its sequence numbers continue."""

    type: Literal["data_wiped"] = "data_wiped"
    request_id: UUID
    discarded: tuple[tuple[PositiveInt, PositiveInt], ...] = Field(
        default=(), description="Inclusive seq ranges of unsent events erased with the rest."
    )


class OutboxPressure(EventBase):
    """The outbox is filling up (warning at 80 %) or full; drops, if any, are counted here."""

    type: Literal["outbox_pressure"] = "outbox_pressure"
    level: Literal["warning", "full", "recovered"]
    depth: int = Field(ge=0)
    capacity: PositiveInt
    dropped_events: int = Field(ge=0, description="Events not recorded for lack of room, since the start.")
    coalesced_telemetry: int = Field(ge=0, description="Telemetry samples merged to make room.")


Event = Annotated[
    ItemAdded
    | ItemConsumed
    | ItemOpened
    | ItemMoved
    | ItemDiscarded
    | AlertRaised
    | AlertCleared
    | OfferAnswered
    | OrderAnswered
    | ConsentChanged
    | ConfigApplied
    | DataWiped
    | OutboxPressure,
    Field(discriminator="type"),
]
StockEvent = ItemAdded | ItemConsumed | ItemOpened | ItemMoved | ItemDiscarded

# Most events in one batch message: a backlog drains in batches, and 100 events of ~300 bytes
# keep a message far below any broker's size limit.
MAX_BATCH = 100


class EventBatch(Message):
    """Several events of one device in one message, as a backlog drains after an outage."""

    type: Literal["event_batch"] = "event_batch"
    device_id: DeviceId
    events: tuple[Event, ...] = Field(min_length=1, max_length=MAX_BATCH)


EventMessage = Annotated[
    ItemAdded
    | ItemConsumed
    | ItemOpened
    | ItemMoved
    | ItemDiscarded
    | AlertRaised
    | AlertCleared
    | OfferAnswered
    | OrderAnswered
    | ConsentChanged
    | ConfigApplied
    | DataWiped
    | OutboxPressure
    | EventBatch,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_MESSAGE_ADAPTER: TypeAdapter[EventMessage] = TypeAdapter(EventMessage)


class TelemetryReported(Message):
    """A device's periodic health report; not durable, newer replaces older."""

    type: Literal["telemetry"] = "telemetry"
    device_id: DeviceId
    occurred_at: UtcDatetime
    outbox_depth: int = Field(ge=0, description="Events recorded but not yet acknowledged by the cloud.")
    uptime_s: float = Field(ge=0)
    temperatures_c: dict[str, float] = Field(default_factory=dict, description="Latest reading per probe.")
    door_open: bool | None = None


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


class OrderLine(BaseModel):
    """One product of an order and how many units of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ProductCode
    quantity: PositiveInt


class OrderUpdated(Message):
    """The state of a grocery order changed; delivered lines are expected in the fridge."""

    type: Literal["order_updated"] = "order_updated"
    order_id: UUID
    device_id: DeviceId
    status: FridgeOrderStatus
    expected_delivery: UtcDatetime | None = None
    lines: tuple[OrderLine, ...] = ()


class ProductInfo(BaseModel):
    """What the cloud's catalog knows about a product the fridge scanned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ProductCode
    name: str = Field(min_length=1, max_length=200)
    unit: Unit = "unit"
    unit_grams: float | None = Field(default=None, gt=0, description="Weight of one unit, for shelves.")
    pack_size: float | None = Field(
        default=None,
        gt=0,
        description="Net amount in one pack, in `unit`, for g and ml products: what a scan-in adds "
        "[default: unit_grams]. A `unit` product's pack is one unit.",
    )
    shelf_life_days: int | None = Field(default=None, ge=0)
    opened_shelf_life_days: int | None = Field(default=None, ge=0)
    perishable: bool = True
    location: Location = "fridge"


class CatalogUpdated(Message):
    """Product details for codes the fridge holds, from the cloud's catalog."""

    type: Literal["catalog_updated"] = "catalog_updated"
    device_id: DeviceId
    products: tuple[ProductInfo, ...] = Field(min_length=1)


class WipeRequested(Message):
    """Erase every local record of the household; confirmed by a DataWiped event."""

    type: Literal["wipe_requested"] = "wipe_requested"
    device_id: DeviceId
    request_id: UUID


Command = Annotated[
    EventsAcknowledged | OfferSent | OrderUpdated | CatalogUpdated | WipeRequested,
    Field(discriminator="type"),
]
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


def decode_events(raw: bytes | str) -> tuple[list[Event], list[str]]:
    """Decode what a device publishes on its events topic: one event or a batch.

    Return the valid events and, for what did not validate, the reasons. A batch with one bad
    event still yields the others, so a device is never stuck resending a batch forever; which
    device each event belongs to is for the caller to check against the topic. A payload that is no
    event at all, or a batch of more than ``MAX_BATCH`` events, raises :class:`InvalidMessage`:
    whatever the bytes (invalid UTF-8, nesting too deep to parse, numbers too long to convert), never
    another exception.
    """
    try:
        message = EVENT_MESSAGE_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return _decode_batch_leniently(raw, _reason(exc))
    if isinstance(message, EventBatch):
        return list(message.events), []
    return [message], []


def _decode_batch_leniently(raw: bytes | str, reason: str) -> tuple[list[Event], list[str]]:
    """Return the valid events of a batch that did not validate whole, and why the rest did not."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        # Not JSON, not UTF-8, an integer too long to convert (ValueError), or nesting deeper than
        # the parser's stack (RecursionError): pydantic's reason says which.
        raise InvalidMessage(reason) from None
    if not (isinstance(document, dict) and document.get("type") == "event_batch"):
        raise InvalidMessage(reason)
    items = document.get("events")
    if not isinstance(items, list) or not items:
        raise InvalidMessage(reason)
    if len(items) > MAX_BATCH:
        # Refused whole: the limit bounds what one message may cost to validate and store.
        raise InvalidMessage(f"events: a batch holds 1 to {MAX_BATCH} events, not {len(items)}")
    events: list[Event] = []
    reasons: list[str] = []
    for index, item in enumerate(items):
        try:
            events.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            reasons.append(f"events.{index}: {_reason(exc)}")
    return events, reasons


def encode_batch(device_id: str, payloads: list[bytes]) -> bytes:
    """Join already-encoded events of one device into an EventBatch payload, without re-encoding."""
    if not 1 <= len(payloads) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} events, not {len(payloads)}")
    head = b'{"schema_version":1,"type":"event_batch","device_id":"' + device_id.encode() + b'","events":['
    return head + b",".join(payloads) + b"]}"


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
