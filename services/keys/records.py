"""The keys topic's records: one per data key, keyed by [app id, device id, key id], and a
tombstone (no value) once the key is erased. Compacted on Apache Kafka; the embedded broker
never compacts, so devreg's archives drop what a tombstone erased (services/log/archive.py).

Sent to the partition of the device (not of the record's own key), so a device's keys live
on the partition of its commands and events: the worker that owns the device owns its keys.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from projections.positions import Record
from services.keys.store import Slot, StoredKey


class KeyValue(msgspec.Struct, frozen=True):
    wrapped: bytes  # the data key under the key-encryption key (base64 in JSON)


_encoder = msgspec.json.Encoder()
_slot_decoder = msgspec.json.Decoder(tuple[str, str, str])
_value_decoder = msgspec.json.Decoder(KeyValue)


def record_key(slot: Slot) -> bytes:
    return _encoder.encode(slot)


def record_value(wrapped: bytes) -> bytes:
    return _encoder.encode(KeyValue(wrapped))


def slot_of(key: bytes | None) -> Slot | None:
    try:
        return _slot_decoder.decode(key or b"")
    except msgspec.DecodeError:
        return None


def fold(records: Iterable[Record]) -> tuple[dict[Slot, StoredKey], set[Slot]]:
    """Keys topic records, in order, to the keys they leave and the slots they erased."""
    live: dict[Slot, StoredKey] = {}
    erased: set[Slot] = set()
    for record in records:
        slot = slot_of(record.key)
        if slot is None:
            continue  # not a key record: nothing of ours to keep
        if record.value is None:
            live.pop(slot, None)
            erased.add(slot)
            continue
        value = _value_decoder.decode(record.value)
        live[slot] = StoredKey(*slot, partition=record.partition, wrapped=value.wrapped)
        erased.discard(slot)
    return live, erased
