"""How one record is written in a segment file of the kept log (services/log/segments.py).

A frame is a header (payload length, offset, CRC-32 of the payload) and a msgpack payload,
the array [timestamp, key, value, headers]. Elements past those four are ignored when a
payload is read: an erasure pads the tombstone it writes in place of a record with one, so
that the tombstone's frame is exactly as long as the record's (services/log/kept_compaction.py)
and nothing after it moves.
"""

from __future__ import annotations

import struct
import zlib

import msgspec

from projections.positions import Record

FRAME = struct.Struct(">IQI")  # payload length, offset, CRC-32 of the payload
MAX_PAYLOAD = 64 << 20  # beyond any record Kafka would take: a damaged length
Headers = tuple[tuple[str, bytes | None], ...]


class Payload(msgspec.Struct, array_like=True, frozen=True):
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Payload)


def header(offset: int, payload: bytes) -> bytes:
    return FRAME.pack(len(payload), offset, zlib.crc32(payload))


def frame(record: Record) -> bytes:
    payload = _ENCODER.encode(Payload(record.timestamp, record.key, record.value, record.headers))
    return header(record.offset, payload) + payload


def decode(payload: bytes | memoryview) -> Payload:
    return _DECODER.decode(payload)


def record(topic: str, partition: int, offset: int, payload: bytes | memoryview) -> Record:
    p = _DECODER.decode(payload)
    return Record(topic, partition, offset, p.timestamp, p.key, p.value, p.headers)


def tombstone(payload: bytes) -> bytes:
    """The payload of the same record without its value, exactly as long as `payload`."""
    p = _DECODER.decode(payload)
    for pad in _pads(len(payload) - len(_ENCODER.encode((p.timestamp, p.key, None, p.headers)))):
        erased = _ENCODER.encode((p.timestamp, p.key, None, p.headers, pad))
        if len(erased) == len(payload):
            return erased
    raise ValueError(f"no tombstone of {len(payload)} bytes for this payload")


def _pads(room: int) -> list[object]:
    """Candidates for one trailing element of about `room` bytes (msgpack spends 1 to 5 bytes
    on a binary's length, and the array's own header may grow by one)."""
    pads: list[object] = [None, [None]]
    for extra in range(1, 8):
        size = max(room - extra, 0)
        pads += [bytes(size), [None, bytes(size)]]
    return pads
