"""The swarm's MQTT packets: encoded, and cut back out of a stream of bytes."""

from __future__ import annotations

import pytest

from shared.messages import EventsAcknowledged, encode
from simulator.load.packets import MqttProtocolError, puback_packet, publish_packet, split_packets


def test_packets_split_wherever_the_bytes_are_cut() -> None:
    ack = EventsAcknowledged(device_id="swarm-00001", ranges=((1, 3),))
    big = b"x" * 20_000  # a remaining length of three bytes
    stream = (
        publish_packet(b"\x00\x03a/b", 7, encode(ack))
        + puback_packet(9)
        + publish_packet(b"\x00\x03a/b", 8, big)
    )
    buffer, packets = bytearray(), []
    for byte in stream:
        buffer.append(byte)
        packets += split_packets(buffer)

    assert buffer == b""
    assert [(first, len(body)) for first, body in packets] == [
        (0x32, 2 + 3 + 2 + len(encode(ack))),
        (0x40, 2),
        (0x32, 2 + 3 + 2 + len(big)),
    ]
    assert packets[1][1] == (9).to_bytes(2, "big")
    with pytest.raises(MqttProtocolError):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))
