"""Payload models and decoders of shared.messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared.errors import InvalidMessage
from shared.messages import (
    SCHEMA_VERSION,
    AvailabilityChanged,
    ConfigDesired,
    EventsAcknowledged,
    ItemAdded,
    ItemConsumed,
    Message,
    OfferSent,
    OrderUpdated,
    TelemetryReported,
    decode_availability,
    decode_command,
    decode_config,
    decode_event,
    decode_telemetry,
    encode,
    seq_ranges,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVENT_ID = UUID("12345678-1234-5678-1234-567812345678")
OTHER_ID = UUID("87654321-4321-8765-4321-876543218765")


def _added(**overrides: Any) -> ItemAdded:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "device_id": "fridge-1",
        "seq": 7,
        "occurred_at": T0,
        "code": "4006381333931",
        "lot_id": 3,
        "quantity": 2,
    }
    fields.update(overrides)
    return ItemAdded(**fields)


def _event_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(_added()))
    data.update(overrides)
    return data


ROUND_TRIPS: list[tuple[Message, Callable[[bytes | str], Message]]] = [
    (_added(), decode_event),
    (
        ItemConsumed(event_id=EVENT_ID, device_id="fridge-1", seq=8, occurred_at=T0, code="ABC123", lot_id=3),
        decode_event,
    ),
    (EventsAcknowledged(device_id="fridge-1", ranges=((1, 3), (7, 7))), decode_command),
    (
        OfferSent(
            offer_id=OTHER_ID,
            device_id="fridge-1",
            title="Milk -20%",
            body="",
            explanation="You buy milk every week.",
            expires_at=T0 + timedelta(days=2),
        ),
        decode_command,
    ),
    (OrderUpdated(order_id=OTHER_ID, device_id="fridge-1", status="created"), decode_command),
    (
        OrderUpdated(
            order_id=OTHER_ID,
            device_id="fridge-1",
            status="dispatched",
            expected_delivery=T0 + timedelta(hours=3),
        ),
        decode_command,
    ),
    (
        TelemetryReported(device_id="fridge-1", occurred_at=T0, outbox_depth=0, uptime_s=12.5),
        decode_telemetry,
    ),
    (AvailabilityChanged(device_id="fridge-1", state="offline", since=T0), decode_availability),
    (
        ConfigDesired(
            device_id="fridge-1",
            version=3,
            settings={"telemetry_interval_s": 30, "nested": {"a": [1, "b", None, True, 1.5]}},
        ),
        decode_config,
    ),
]


@pytest.mark.parametrize(("message", "decoder"), ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_round_trip(message: Message, decoder: Callable[[bytes | str], Message]) -> None:
    raw = encode(message)
    decoded = decoder(raw)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decoder(raw.decode()) == message
    assert json.loads(raw)["schema_version"] == SCHEMA_VERSION == 1


def test_encoded_event_fields() -> None:
    assert json.loads(encode(_added())) == {
        "schema_version": 1,
        "type": "item_added",
        "event_id": "12345678-1234-5678-1234-567812345678",
        "device_id": "fridge-1",
        "seq": 7,
        "occurred_at": "2024-05-01T12:00:00Z",
        "code": "4006381333931",
        "lot_id": 3,
        "quantity": 2.0,
        "unit": "unit",
        "location": "fridge",
        "best_before": None,
        "order_id": None,
    }


def test_defaults() -> None:
    removed = ItemConsumed(event_id=EVENT_ID, device_id="d", seq=1, occurred_at=T0, code="1", lot_id=1)
    assert removed.quantity == 1
    assert removed.source == "scan"
    assert removed.type == "item_consumed"
    assert removed.schema_version == 1


@pytest.mark.parametrize(
    ("decoder", "payload"),
    [
        # The type of the first contract version, replaced by item_consumed.
        (decode_event, _event_json(type="item_removed")),
        (decode_event, _event_json(type="telemetry")),
        (decode_command, {"type": "reboot", "device_id": "fridge-1"}),
        (
            decode_telemetry,
            {"type": "availability", "device_id": "d", "state": "online", "since": T0.isoformat()},
        ),
    ],
)
def test_unknown_type_rejected(decoder: Callable[[bytes | str], Message], payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage, match=r"type|tag"):
        decoder(json.dumps(payload).encode())


def test_missing_type_rejected() -> None:
    payload = _event_json()
    del payload["type"]
    with pytest.raises(InvalidMessage):
        decode_event(json.dumps(payload))


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_schema_version_rejected(version: object) -> None:
    with pytest.raises(InvalidMessage, match="schema_version") as info:
        decode_event(json.dumps(_event_json(schema_version=version)))
    assert "schema_version" in info.value.reason


def test_extra_field_rejected() -> None:
    with pytest.raises(InvalidMessage, match="color") as info:
        decode_event(json.dumps(_event_json(color="red")))
    assert "Extra inputs are not permitted" in info.value.reason


def test_extra_field_rejected_in_command() -> None:
    payload = {"type": "events_acknowledged", "device_id": "d", "ranges": [[1, 1]], "extra": 1}
    with pytest.raises(InvalidMessage, match="extra"):
        decode_command(json.dumps(payload))


def test_naive_datetime_rejected_on_the_wire() -> None:
    with pytest.raises(InvalidMessage, match="occurred_at") as info:
        decode_event(json.dumps(_event_json(occurred_at="2024-05-01T12:00:00")))
    assert "timezone" in info.value.reason


def test_naive_datetime_rejected_in_constructor() -> None:
    with pytest.raises(ValidationError):
        _added(occurred_at=datetime(2024, 5, 1, 12, 0))


def test_non_utc_datetime_normalized_to_utc() -> None:
    event = decode_event(json.dumps(_event_json(occurred_at="2024-05-01T14:00:00+02:00")))
    assert event.occurred_at == T0
    assert event.occurred_at.tzinfo is UTC
    assert json.loads(encode(event))["occurred_at"] == "2024-05-01T12:00:00Z"


def test_non_utc_datetime_normalized_in_constructor() -> None:
    minus5 = timezone(timedelta(hours=-5))
    event = _added(occurred_at=datetime(2024, 5, 1, 7, 0, tzinfo=minus5))
    assert event.occurred_at == T0
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.hour == 12


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"type": "item_added",}', b"\xff\xfe"])
def test_malformed_json_rejected_with_reason(raw: bytes) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_event(raw)
    assert isinstance(info.value.reason, str)
    assert info.value.reason.startswith("payload: ")
    assert str(info.value) == info.value.reason


def test_non_object_json_rejected() -> None:
    with pytest.raises(InvalidMessage, match="payload: "):
        decode_command(b"[]")


def test_reason_is_capped_at_three_errors() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_event(b'{"type": "item_added"}')
    # event_id, device_id, seq, occurred_at, code and lot_id are missing: three shown, three counted.
    assert info.value.reason.count("Field required") == 3
    assert info.value.reason.endswith("(+3 more)")


@pytest.mark.parametrize("seq", [0, -1])
def test_non_positive_seq_rejected(seq: int) -> None:
    with pytest.raises(InvalidMessage, match="seq"):
        decode_event(json.dumps(_event_json(seq=seq)))
    with pytest.raises(ValidationError):
        _added(seq=seq)


@pytest.mark.parametrize("quantity", [0, -2])
def test_non_positive_quantity_rejected(quantity: int) -> None:
    with pytest.raises(InvalidMessage, match="quantity"):
        decode_event(json.dumps(_event_json(quantity=quantity)))


@pytest.mark.parametrize("code", ["", "a b", "12-3", "x" * 49, "café"])
def test_bad_product_code_rejected(code: str) -> None:
    with pytest.raises(InvalidMessage, match="code"):
        decode_event(json.dumps(_event_json(code=code)))


@pytest.mark.parametrize("device_id", ["", "a/b", "+", "-x", "x" * 65])
def test_bad_device_id_rejected(device_id: str) -> None:
    with pytest.raises(InvalidMessage, match="device_id"):
        decode_event(json.dumps(_event_json(device_id=device_id)))


def test_events_acknowledged_first_greater_than_last_rejected() -> None:
    payload = {"type": "events_acknowledged", "device_id": "d", "ranges": [[1, 2], [5, 3]]}
    with pytest.raises(InvalidMessage, match="first <= last"):
        decode_command(json.dumps(payload))
    with pytest.raises(ValidationError):
        EventsAcknowledged(device_id="d", ranges=((5, 3),))


def test_events_acknowledged_single_seq_range_allowed() -> None:
    ack = decode_command(json.dumps({"type": "events_acknowledged", "device_id": "d", "ranges": [[4, 4]]}))
    assert ack == EventsAcknowledged(device_id="d", ranges=((4, 4),))


@pytest.mark.parametrize("ranges", [[], [[0, 1]], [[1]], [[1, 2, 3]]])
def test_events_acknowledged_bad_ranges_rejected(ranges: list[list[int]]) -> None:
    with pytest.raises(InvalidMessage, match="ranges"):
        decode_command(json.dumps({"type": "events_acknowledged", "device_id": "d", "ranges": ranges}))


def test_telemetry_negative_depth_rejected() -> None:
    payload = {
        "type": "telemetry",
        "device_id": "d",
        "occurred_at": "2024-05-01T12:00:00Z",
        "outbox_depth": -1,
        "uptime_s": 0,
    }
    with pytest.raises(InvalidMessage, match="outbox_depth"):
        decode_telemetry(json.dumps(payload))


def test_availability_state_must_be_online_or_offline() -> None:
    payload = {"type": "availability", "device_id": "d", "state": "away", "since": "2024-05-01T12:00:00Z"}
    with pytest.raises(InvalidMessage, match="state"):
        decode_availability(json.dumps(payload))


def test_order_status_must_be_known() -> None:
    payload = {"type": "order_updated", "order_id": str(OTHER_ID), "device_id": "d", "status": "lost"}
    with pytest.raises(InvalidMessage, match="status"):
        decode_command(json.dumps(payload))


@pytest.mark.parametrize(
    ("seqs", "expected"),
    [
        ([], ()),
        ([5], ((5, 5),)),
        ([1, 2, 3, 7], ((1, 3), (7, 7))),
        ([7, 3, 1, 2], ((1, 3), (7, 7))),
        ([2, 2, 1, 1, 3, 3], ((1, 3),)),
        ([10, 9, 8, 4, 4, 6, 1], ((1, 1), (4, 4), (6, 6), (8, 10))),
        ([1, 3, 5], ((1, 1), (3, 3), (5, 5))),
    ],
)
def test_seq_ranges(seqs: list[int], expected: tuple[tuple[int, int], ...]) -> None:
    assert seq_ranges(seqs) == expected


def test_seq_ranges_does_not_mutate_input() -> None:
    seqs = [3, 1, 2]
    seq_ranges(seqs)
    assert seqs == [3, 1, 2]


def test_frozen_event_cannot_be_mutated() -> None:
    event = _added()
    with pytest.raises(ValidationError, match="frozen"):
        event.seq = 99  # type: ignore[misc]
    assert event.seq == 7


def test_frozen_command_cannot_be_mutated() -> None:
    ack = EventsAcknowledged(device_id="d", ranges=((1, 2),))
    with pytest.raises(ValidationError, match="frozen"):
        ack.device_id = "other"  # type: ignore[misc]
    assert ack.device_id == "d"
