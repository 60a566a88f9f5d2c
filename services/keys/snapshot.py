"""Every data key on the keys topic, for the CLI (`devreg as-of` shows tokens opened).

Read whole from the compacted keys topic with a plain reader and unwrapped with the
deployment's key-encryption key; a key a tombstone erased is not there, so whatever was
sealed with it shows as erased (events/sealed.py ERASED).
"""

from __future__ import annotations

import msgspec
from aiokafka import TopicPartition

from events import AnyEvent, sealed
from services.config import ConfigError, Settings
from services.kafka.clients import KafkaAccess
from services.keys import cipher, records
from services.keys.kek import load_kek
from services.keys.personal import PERSONAL_FIELDS
from services.keys.store import Slot
from services.log.reader import LogReader


class KeySnapshot:
    def __init__(self, keys: dict[Slot, bytes]):
        self._keys = keys

    def open(self, app_id: str, device_id: str, field: str, text: str) -> str:
        kid = sealed.key_id(text)
        if kid is None:
            return text
        key = self._keys.get((app_id, device_id, kid))
        value = None
        if key is not None:
            value = cipher.open_sealed(text, key, cipher.context(app_id, device_id, field))
        return sealed.ERASED if value is None else value

    def open_event(self, event: AnyEvent) -> AnyEvent:
        """The event with its sealed values opened, to show (never to check: its hash is of
        the sealed text)."""
        device_id = getattr(event, "device_id", "")
        changes = {}
        for name, label in PERSONAL_FIELDS.items():
            value = getattr(event, name, None)
            if isinstance(value, str) and sealed.is_sealed(value):
                changes[name] = self.open(event.app_id, device_id, label, value)
        return msgspec.structs.replace(event, **changes) if changes else event


async def read_snapshot(settings: Settings, kafka: KafkaAccess) -> KeySnapshot | None:
    """None where this machine has no key-encryption key: tokens are then shown sealed."""
    try:
        kek = load_kek(settings, create=False)
    except ConfigError:
        return None
    found = []
    async with LogReader(kafka) as reader:
        tps: list[TopicPartition] = await reader.partitions(settings.keys_topic)
        async for batch in reader.read(dict.fromkeys(tps, 0)):
            found.extend(batch)
    live, _ = records.fold(found)
    return KeySnapshot(
        {
            slot: cipher.unwrap(kek, stored.wrapped, records.record_key(slot))
            for slot, stored in live.items()
        }
    )
