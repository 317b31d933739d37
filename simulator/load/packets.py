"""The few MQTT 3.1.1 packets the swarm speaks: CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT.

Encoding builds whole packets (fixed header, remaining length, body); decoding cuts a stream of
bytes from the broker into (first byte, body) pairs, whatever the reads cut them into.
"""

from __future__ import annotations

from shared.errors import FrigoError

# MQTT 3.1.1 control packets (first byte) and answers.
CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
PUBLISH_QOS1 = PUBLISH | 0x02
SUBACK_FAILURE = 0x80
PING = bytes([PINGREQ, 0])
BYE = bytes([DISCONNECT, 0])
MAX_PACKET_ID = 0xFFFF


class MqttProtocolError(FrigoError, ValueError):
    """Bytes from the broker that are not the MQTT this client expects."""


def _length(n: int) -> bytes:
    """Encode a remaining length: 7 bits a byte, least significant first."""
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def encode_string(value: str | bytes) -> bytes:
    """Encode a string as MQTT does: its length in two bytes, then its UTF-8 bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, keepalive_s: int) -> bytes:
    """Return a CONNECT with username and password and clean session off (a persistent session)."""
    flags = 0x80 | 0x40  # username, password; clean session (0x02) off
    header = encode_string("MQTT") + bytes([4, flags]) + keepalive_s.to_bytes(2, "big")
    login = encode_string(client_id) + encode_string(username) + encode_string(password)
    return _packet(CONNECT, header + login)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    """Return a SUBSCRIBE to one filter."""
    return _packet(SUBSCRIBE, packet_id.to_bytes(2, "big") + encode_string(topic_filter) + bytes([qos]))


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """Return a QoS 1 PUBLISH; ``topic`` is already length-prefixed (see :func:`encode_string`)."""
    return _packet(PUBLISH_QOS1, topic + packet_id.to_bytes(2, "big") + payload)


def puback_packet(packet_id: int) -> bytes:
    """Return the PUBACK of a received QoS 1 PUBLISH."""
    return bytes([PUBACK, 2]) + packet_id.to_bytes(2, "big")


def split_packets(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Remove every complete packet from ``buffer``; return (first byte, body) of each."""
    packets: list[tuple[int, bytes]] = []
    pos, size = 0, len(buffer)
    while size - pos >= 2:
        length, shift, i, complete = 0, 0, pos + 1, False
        while i < size:
            byte = buffer[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                complete = True
                break
            shift += 7
            if shift >= 28:
                raise MqttProtocolError("a remaining length longer than 4 bytes")
        if not complete or i + length > size:
            break  # the rest of the length or of the body is still on its way
        packets.append((buffer[pos], bytes(buffer[i : i + length])))
        pos = i + length
    del buffer[:pos]
    return packets
